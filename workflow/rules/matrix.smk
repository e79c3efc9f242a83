# Matrix assembly: every run of a task into one long table, the CLTM with its uncertainty, figures.


rule assemble:
    input:
        cells=lambda w: cell_files(config, w.task),
    output:
        runs=report(
            "results/{task}/runs.csv", caption="../report/runs.rst", category="{task}"
        ),
        cltm=report(
            "results/{task}/cltm.csv",
            caption="../report/cltm_table.rst",
            category="{task}",
        ),
        cltm_se="results/{task}/cltm_se.csv",
        cltm_ci_low="results/{task}/cltm_ci_low.csv",
        cltm_ci_high="results/{task}/cltm_ci_high.csv",
        relative_change="results/{task}/relative_change.csv",
        relative_change_se="results/{task}/relative_change_se.csv",
        baselines=report(
            "results/{task}/baselines.csv",
            caption="../report/baselines_table.rst",
            category="{task}",
        ),
        cells=report(
            "results/{task}/cells.csv",
            caption="../report/cells.rst",
            category="{task}",
        ),
        summary="results/{task}/summary.json",
    log:
        "results/logs/assemble/{task}.log",
    conda:
        "../envs/cltm.yaml"
    params:
        languages=lambda w: task_languages(config, w.task),
        flag_alpha=MATRIX["flag_alpha"],
        ci_level=MATRIX["ci_level"],
        allow_mixed_versions=MATRIX["allow_mixed_versions"],
        synthetic=SYNTHETIC,
        families=lambda w: task_families(config, w.task),  # workflow/rules/analysis.smk
    script:
        "../scripts/assemble.py"


rule plot:
    input:
        cltm="results/{task}/cltm.csv",
        cltm_se="results/{task}/cltm_se.csv",
        relative_change="results/{task}/relative_change.csv",
        relative_change_se="results/{task}/relative_change_se.csv",
        baselines="results/{task}/baselines.csv",
        summary="results/{task}/summary.json",
    output:
        cltm_png=report(
            "results/{task}/cltm.png", caption="../report/cltm.rst", category="{task}"
        ),
        cltm_svg="results/{task}/cltm.svg",
        relative_change_png=report(
            "results/{task}/relative_change.png",
            caption="../report/relative_change.rst",
            category="{task}",
        ),
        relative_change_svg="results/{task}/relative_change.svg",
        baselines_png=report(
            "results/{task}/baselines.png",
            caption="../report/baselines.rst",
            category="{task}",
        ),
        baselines_svg="results/{task}/baselines.svg",
    log:
        "results/logs/plot/{task}.log",
    conda:
        "../envs/cltm.yaml"
    params:
        note=DEMO_NOTE,
        flag_alpha=MATRIX["flag_alpha"],  # the footnote names the level the rows were flagged at
        families=lambda w: task_families(config, w.task),  # workflow/rules/analysis.smk
        labels=lambda w: task_labels(config, w.task),
        display_name=lambda w: task_of(w.task).display_name,
    script:
        "../scripts/plot.py"


# A probe task beside its fine-tuning twin (`subsets_from`): how well the cheap probe's matrix agrees.
rule compare_modes:
    input:
        probe="results/{probe}/cells.csv",
        finetune="results/{twin}/cells.csv",
        # the runs: the intervals resample seeds, not cells
        probe_runs="results/{probe}/runs.csv",
        finetune_runs="results/{twin}/runs.csv",
    output:
        json=report(
            "results/compare/{probe}_vs_{twin}.json",
            caption="../report/compare.rst",
            category="probe vs fine-tuning",
        ),
        png=report(
            "results/compare/{probe}_vs_{twin}.png",
            caption="../report/compare.rst",
            category="probe vs fine-tuning",
        ),
        svg="results/compare/{probe}_vs_{twin}.svg",
    log:
        "results/logs/compare_modes/{probe}_vs_{twin}.log",
    wildcard_constraints:
        probe=tasks_pattern(PROBE_TASKS),
        twin=tasks_pattern(FINETUNE_TASKS),
    conda:
        "../envs/cltm.yaml"
    params:
        note=DEMO_NOTE,
        synthetic=SYNTHETIC,
    script:
        "../scripts/compare_modes.py"


# A probe task's learned layer weights, averaged per target: which layers carry the task.
rule layer_weights:
    input:
        cells=lambda w: cell_files(config, w.task),
    output:
        csv=report(
            "results/{task}/layer_weights.csv",
            caption="../report/layer_weights.rst",
            category="{task}",
        ),
        png=report(
            "results/{task}/layer_weights.png",
            caption="../report/layer_weights.rst",
            category="{task}",
        ),
        svg="results/{task}/layer_weights.svg",
    log:
        "results/logs/layer_weights/{task}.log",
    wildcard_constraints:
        task=tasks_pattern(PROBE_TASKS),
    conda:
        "../envs/cltm.yaml"
    params:
        note=DEMO_NOTE,
    script:
        "../scripts/layer_weights.py"
