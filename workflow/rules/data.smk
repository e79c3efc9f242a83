# Data: the demo corpus, per-language manifests, selection on metadata, audio preparation, the encoder.


rule synthesize_demo:
    output:
        clips=directory("results/demo_corpus/{lang}/clips"),
        validated="results/demo_corpus/{lang}/validated.tsv",
        durations="results/demo_corpus/{lang}/clip_durations.tsv",
    log:
        "results/logs/synthesize_demo/{lang}.log",
    conda:
        "../envs/cltm.yaml"
    params:
        demo=config["corpus"]["demo"],
    script:
        "../scripts/synthesize_demo.py"


# The planted known answer of the demo corpus (cltm.demo.plant): each planted language's rule and the
# expected structure of every pair, from the config alone (no audio is read), beside the corpus.
rule plant:
    output:
        PLANT,
    log:
        "results/logs/plant.log",
    conda:
        "../envs/cltm.yaml"
    params:
        demo=config["corpus"]["demo"],
        languages=LANGUAGES,
    script:
        "../scripts/plant.py"


rule manifest:
    input:
        corpus_input,
    output:
        "results/manifests/{lang}.tsv",
    log:
        "results/logs/manifest/{lang}.log",
    conda:
        "../envs/cltm.yaml"
    params:
        corpus=manifest_corpus(),
    script:
        "../scripts/manifest.py"


# Selection, per language, in small jobs. The corpus-wide speaker rules (an id shared by two languages
# is one person: no test voice trains anywhere) make a language's selection read every language's
# speaker labels and test speakers, gathered in two indexes; those inputs are `ancient` (they order
# the jobs only), so adding a language leaves the existing selections, audio and runs alone. Everything a job's
# result depends on besides them reaches it through a file of its own language (its manifest and
# selection settings), so it is redone when those change. The data report checks the final subsets
# of every language for leaks before any run starts (see docs/data.md, "Speaker identity and leakage").
# Cheap bookkeeping, on the machine that runs Snakemake (not one cluster job each).
localrules:
    selection_settings,
    speaker_index,
    test_index,
    subsets,


rule selection_settings:
    output:
        "results/selection/{lang}.settings.json",
    log:
        "results/logs/selection_settings/{lang}.log",
    conda:
        "../envs/cltm.yaml"
    params:
        spec=lambda w: selection_config(config, w.lang),
    script:
        "../scripts/settings.py"


rule speakers:
    input:
        "results/manifests/{lang}.tsv",
    output:
        "results/selection/{lang}.speakers.tsv",
    log:
        "results/logs/speakers/{lang}.log",
    conda:
        "../envs/cltm.yaml"
    script:
        "../scripts/speakers.py"


rule speaker_index:
    input:
        expand("results/selection/{lang}.speakers.tsv", lang=LANGUAGES),
    output:
        "results/selection/speakers.tsv",
    log:
        "results/logs/speaker_index.log",
    conda:
        "../envs/cltm.yaml"
    script:
        "../scripts/speaker_index.py"


rule test_speakers:
    input:
        unpack(test_speakers_inputs),
    output:
        "results/selection/{lang}.test.json",
    log:
        "results/logs/test_speakers/{lang}.log",
    conda:
        "../envs/cltm.yaml"
    script:
        "../scripts/test_speakers.py"


rule test_index:
    input:
        expand("results/selection/{lang}.test.json", lang=LANGUAGES),
    output:
        "results/selection/test_speakers.json",
    log:
        "results/logs/test_index.log",
    conda:
        "../envs/cltm.yaml"
    script:
        "../scripts/test_index.py"


rule select:
    input:
        unpack(select_inputs),
    output:
        "results/selection/{lang}.json",
    log:
        "results/logs/select/{lang}.log",
    conda:
        "../envs/cltm.yaml"
    script:
        "../scripts/select.py"


rule data_summary:
    input:
        manifests=expand("results/manifests/{lang}.tsv", lang=LANGUAGES),
        plans=expand("results/selection/{lang}.json", lang=LANGUAGES),
    output:
        report(
            "results/data_summary.tsv",
            caption="../report/data_summary.rst",
            category="Data",
        ),
    log:
        "results/logs/data_summary.log",
    conda:
        "../envs/cltm.yaml"
    script:
        "../scripts/data_summary.py"


rule prepare_audio:
    input:
        manifest="results/manifests/{lang}.tsv",
        plan="results/selection/{lang}.json",
        settings="results/selection/{lang}.settings.json",
    output:
        audio=AUDIO,
        index=AUDIO_INDEX,
        record="results/data/{lang}.json",
    log:
        "results/logs/prepare_audio/{lang}.log",
    conda:
        "../envs/cltm.yaml"
    script:
        "../scripts/prepare_audio.py"


rule subsets:
    input:
        "results/data/{lang}.json",
    output:
        SUBSETS,
    log:
        "results/logs/subsets/{task}/{lang}.log",
    conda:
        "../envs/cltm.yaml"
    script:
        "../scripts/subsets.py"


# Waits for every language: no fine-tuning starts before all audio is prepared and checked, and no
# test voice of any language is in any language's final training subsets.
rule data_report:
    input:
        expand("results/data/{lang}.json", lang=LANGUAGES),
    output:
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
        "../envs/cltm.yaml"
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
        "../envs/cltm.yaml"
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
        preprocessor="results/encoder/preprocessor_config.json",
        summary="results/encoder/summary.json",
    log:
        "results/logs/encoder.log",
    conda:
        "../envs/cltm.yaml"
    params:
        encoder=encoder_settings(config),
        sample_rate=config["data"]["sample_rate"],
    script:
        "../scripts/encoder.py"
