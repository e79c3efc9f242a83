# Data: the demo corpus, per-language manifests, selection on metadata, audio preparation, the encoder.


rule synthesize_demo:
    output:
        clips=directory("results/demo_corpus/{lang}/clips"),
        validated="results/demo_corpus/{lang}/validated.tsv",
        durations="results/demo_corpus/{lang}/clip_durations.tsv",
    log:
        "results/logs/synthesize_demo/{lang}.log",
    conda:
        "../../envs/cltm.yaml"
    params:
        demo=config["corpus"]["demo"],
    script:
        "../scripts/synthesize_demo.py"


rule manifest:
    input:
        corpus_input,
    output:
        "results/manifests/{lang}.tsv",
    log:
        "results/logs/manifest/{lang}.log",
    conda:
        "../../envs/cltm.yaml"
    params:
        corpus=config["corpus"],
    script:
        "../scripts/manifest.py"


rule select:
    input:
        expand("results/manifests/{lang}.tsv", lang=LANGUAGES),
    output:
        subsets=subset_files(),
        summary=report(
            "results/data_summary.tsv",
            caption="../report/data_summary.rst",
            category="Data",
        ),
    log:
        "results/logs/select.log",
    conda:
        "../../envs/cltm.yaml"
    params:
        data=config["data"],
        tasks=config["tasks"],
    script:
        "../scripts/select.py"


rule prepare_audio:
    input:
        manifest="results/manifests/{lang}.tsv",
        subsets=lambda w: [
            f"results/subsets/{t}/{w.lang}.json" for t in tasks_of(w.lang)
        ],
    output:
        audio="results/audio/{lang}.npy",
        index="results/audio/{lang}.tsv",
    log:
        "results/logs/prepare_audio/{lang}.log",
    conda:
        "../../envs/cltm.yaml"
    params:
        sample_rate=config["data"]["sample_rate"],
    script:
        "../scripts/prepare_audio.py"


rule encoder:
    output:
        config="results/encoder/config.json",
        weights="results/encoder/model.safetensors",
        summary="results/encoder/summary.json",
    log:
        "results/logs/encoder.log",
    conda:
        "../../envs/cltm.yaml"
    params:
        encoder=encoder_settings(config),
    script:
        "../scripts/encoder.py"
