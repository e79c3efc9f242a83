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
        plans=expand("results/selection/{lang}.json", lang=LANGUAGES),
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
        config=selection_config(config),
    script:
        "../scripts/select.py"


rule prepare_audio:
    input:
        manifest="results/manifests/{lang}.tsv",
        plan="results/selection/{lang}.json",
    output:
        audio="results/audio/{lang}.npy",
        index="results/audio/{lang}.tsv",
        record="results/data/{lang}.json",
    log:
        "results/logs/prepare_audio/{lang}.log",
    conda:
        "../../envs/cltm.yaml"
    params:
        config=lambda w: selection_config(config, w.lang),
        sample_rate=config["data"]["sample_rate"],
    script:
        "../scripts/prepare_audio.py"


# Waits for every language: no fine-tuning starts before all audio is prepared and checked.
rule data_report:
    input:
        expand("results/data/{lang}.json", lang=LANGUAGES),
    output:
        subsets=subset_files(),
        report=report(
            "results/data_report.tsv",
            caption="../report/data_report.rst",
            category="Data",
        ),
        dropped=report(
            "results/dropped_clips.tsv",
            caption="../report/dropped_clips.rst",
            category="Data",
        ),
        speakers=report(
            "results/speaker_checks.tsv",
            caption="../report/speaker_checks.rst",
            category="Data",
        ),
    log:
        "results/logs/data_report.log",
    conda:
        "../../envs/cltm.yaml"
    script:
        "../scripts/data_report.py"


# `snakemake --cores 1 preflight`: metadata only, before any GPU hour.
rule preflight:
    input:
        expand("results/manifests/{lang}.tsv", lang=LANGUAGES),
    output:
        capacity=report(
            "results/preflight/capacity.tsv",
            caption="../report/preflight.rst",
            category="Data",
        ),
        grid="results/preflight/grid.tsv",
        summary="results/preflight/summary.txt",
    log:
        "results/logs/preflight.log",
    conda:
        "../../envs/cltm.yaml"
    params:
        config=config,
    script:
        "../scripts/preflight.py"


rule encoder:
    input:
        encoder_files,
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
