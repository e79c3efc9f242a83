# Reading the matrix: families, typology (Mantel tests against URIEL+ distances), a language map, the
# strongest pairs, seed planning; and, on request (`snakemake --cores N learning_curves`), the learning
# curve that chooses N. Family and distance tables ship with the package (cltm/analysis/tables), nothing
# is fetched.

from cltm.analysis.families import task_families, task_info, task_labels  # noqa: E402
from cltm.config import analysis_settings, task_size  # noqa: E402
from cltm.config.targets import learning_curve_runs  # noqa: E402
from cltm.paths import (  # noqa: E402
    LEARNING_CURVE_RUN,
    LEARNING_CURVE_SCORES,
    LEARNING_CURVE_SUBSETS,
)

ANALYSIS = analysis_settings(config)


rule analyse:
    input:
        cltm="results/{task}/cltm.csv",
        cltm_se="results/{task}/cltm_se.csv",
        cltm_ci_low="results/{task}/cltm_ci_low.csv",
        cltm_ci_high="results/{task}/cltm_ci_high.csv",
        baselines="results/{task}/baselines.csv",
        cells="results/{task}/cells.csv",
        runs="results/{task}/runs.csv",  # the map's stability resamples seeds
    output:
        languages=report(
            "results/{task}/analysis/languages.tsv",
            caption="../report/languages.rst",
            category="{task}",
            subcategory="Reading the matrix",
        ),
        family_means=report(
            "results/{task}/analysis/family_means.csv",
            caption="../report/family_means.rst",
            category="{task}",
            subcategory="Reading the matrix",
        ),
        typology=report(
            "results/{task}/analysis/typology.csv",
            caption="../report/typology_table.rst",
            category="{task}",
            subcategory="Reading the matrix",
        ),
        distances="results/{task}/analysis/distances.csv",
        top_pairs=report(
            "results/{task}/analysis/top_pairs.csv",
            caption="../report/top_pairs.rst",
            category="{task}",
            subcategory="Reading the matrix",
        ),
        seed_plan=report(
            "results/{task}/analysis/seed_plan.csv",
            caption="../report/seed_plan.rst",
            category="{task}",
            subcategory="Reading the matrix",
        ),
        summary="results/{task}/analysis/summary.json",
    log:
        "results/logs/analyse/{task}.log",
    conda:
        "../envs/cltm.yaml"
    params:
        info=lambda w: task_info(config, w.task),
        # without the known answer's thresholds (rule known_answer): editing them does not redo this rule
        settings={k: v for k, v in ANALYSIS.items() if k != "known_answer"},
        seeds=lambda w: len(task_seeds(config, w.task)),
    script:
        "../scripts/analyse.py"


rule analysis_plots:
    input:
        cltm="results/{task}/cltm.csv",
        baselines="results/{task}/baselines.csv",
        distances="results/{task}/analysis/distances.csv",
        typology="results/{task}/analysis/typology.csv",
        summary="results/{task}/analysis/summary.json",
    output:
        typology_png=report(
            "results/{task}/analysis/typology.png",
            caption="../report/typology.rst",
            category="{task}",
            subcategory="Reading the matrix",
        ),
        typology_svg="results/{task}/analysis/typology.svg",
        language_map_png=report(
            "results/{task}/analysis/language_map.png",
            caption="../report/language_map.rst",
            category="{task}",
            subcategory="Reading the matrix",
        ),
        language_map_svg="results/{task}/analysis/language_map.svg",
    log:
        "results/logs/analysis_plots/{task}.log",
    conda:
        "../envs/cltm.yaml"
    params:
        families=lambda w: task_families(config, w.task),
        labels=lambda w: task_labels(config, w.task),
        method=ANALYSIS["cluster_method"],
        note=DEMO_NOTE,
    script:
        "../scripts/analysis_plots.py"


# ---------------------------------------------------------------- learning curves (on request)
# Rung n: `single` = n clips of the target, `dual` = 2n, both nested in the ordinary subsets. The rung
# n = N is the ordinary grid's single and dual: those runs are reused for the seeds they share.


rule learning_curve_subsets:
    input:
        subsets=SUBSETS,
        index=AUDIO_INDEX,
    output:
        LEARNING_CURVE_SUBSETS,
    log:
        "results/logs/learning_curve_subsets/{task}/n{size}/{lang}.log",
    wildcard_constraints:
        size=r"\d+",
    conda:
        "../envs/cltm.yaml"
    params:
        seed=config["data"]["seed"],
        task=lambda w: config["tasks"][w.task],
    script:
        "../scripts/learning_curve_subsets.py"


rule learning_curve_finetune:
    input:
        settings=SETTINGS,
        encoder=ENCODER,
        data_report="results/data_report.tsv",
        subsets=LEARNING_CURVE_SUBSETS.replace("{lang}", "{target}"),
        audio=AUDIO.replace("{lang}", "{target}"),
        index=AUDIO_INDEX.replace("{lang}", "{target}"),
    output:
        run=LEARNING_CURVE_RUN,
        scores=LEARNING_CURVE_SCORES,
    log:
        "results/logs/learning_curve/{task}/{target}/n{size}/{condition}/seed{seed}.log",
    wildcard_constraints:
        size=r"\d+",
        condition="single|dual",
    conda:
        "../envs/cltm.yaml"
    threads: 1
    resources:
        gpu=1,
        runtime=lambda wildcards, attempt: task_of(wildcards.task).runtime_minutes
        * attempt,
    # the checkpoint path is cltm.paths.LEARNING_CURVE_CHECKPOINT, spelled out: the command is the rule's
    # code for Snakemake's rerun triggers, so it stays as it was (tests/test_paths.py checks the two agree)
    shell:
        "python -m cltm.worker finetune --settings {input.settings} --task {wildcards.task}"
        " --target {wildcards.target} --condition {wildcards.condition} --seed {wildcards.seed}"
        " --encoder {input.encoder} --subsets {input.subsets} --audio {input.audio}"
        " --threads {threads} --run {output.run} --scores {output.scores}"
        " --checkpoint results/{wildcards.task}/learning_curve/checkpoints/{wildcards.target}/n{wildcards.size}/{wildcards.condition}/seed{wildcards.seed}.pt"
        " > {log} 2>&1"


rule learning_curve:
    input:
        lambda w: list(learning_curve_runs(config, w.task)),
    output:
        table=report(
            "results/{task}/learning_curve.csv",
            caption="../report/learning_curve_table.rst",
            category="{task}",
            subcategory="Choosing N",
        ),
        recommendation="results/{task}/learning_curve.json",
        png=report(
            "results/{task}/learning_curve.png",
            caption="../report/learning_curve.rst",
            category="{task}",
            subcategory="Choosing N",
        ),
        svg="results/{task}/learning_curve.svg",
    log:
        "results/logs/learning_curve/{task}.log",
    conda:
        "../envs/cltm.yaml"
    params:
        sizes=lambda w: learning_curve_runs(config, w.task),
        n=lambda w: task_size(config, w.task),
        flag_alpha=MATRIX["flag_alpha"],
        grid_seeds=lambda w: task_seeds(config, w.task),  # the recommendation is made at the grid's seed count
        note=DEMO_NOTE,
    script:
        "../scripts/learning_curve.py"


rule learning_curves:
    input:
        expand(
            "results/{task}/learning_curve.{ext}",
            task=FINETUNE_TASKS,  # probe tasks have no learning-curve runs
            ext=("csv", "json", "png", "svg"),
        ),
