"""What the workflow makes for a config: every final target, the cell files of a task's matrix, and the
runs of a learning curve. Paths from `cltm.paths`; standard library only (Snakemake plans with it)."""

from __future__ import annotations

from cltm.config.settings import (analysis_settings, conditions, ladder_sizes, planted_tasks, task_languages, task_seeds,
                                  task_size, twins)
from cltm.paths import (
    ANALYSIS_FIGURES,
    ANALYSIS_TABLES,
    CELL_JSON,
    DUAL,
    FIGURE_FORMATS,
    FIGURES,
    KNOWN_ANSWER_FIGURE,
    KNOWN_ANSWER_JSON,
    KNOWN_ANSWER_TABLE,
    MATRIX_TABLES,
    SINGLE,
    learning_curve_path,
    run_path,
)


def probe_tasks(config: dict) -> list[str]:
    """The tasks whose runs train a head on frozen features (`mode: probe`)."""
    return [t for t, cfg in config["tasks"].items() if (cfg.get("mode") or "finetune") == "probe"]


def cell_files(config: dict, task: str) -> list[str]:
    """The cell files of a task's grid (`CELL_JSON`): what its matrix is assembled from."""
    return [CELL_JSON.format(task=task, target=target, condition=condition)
            for target in task_languages(config, task) for condition in conditions(config, task, target)]


def analysis_targets(config: dict) -> list[str]:
    """Every task's analysis tables and figures (results/<task>/analysis/)."""
    tasks = list(config["tasks"])
    return ([f"results/{t}/analysis/{name}" for t in tasks for name in ANALYSIS_TABLES]
            + [f"results/{t}/analysis/{fig}.{ext}" for t in tasks for fig in ANALYSIS_FIGURES for ext in FIGURE_FORMATS])


def known_answer_targets(config: dict) -> list[str]:
    """With the demo corpus and a plant (corpus.demo.plant): the known-answer table, summary and figure of
    every task whose labels are the plant's (`cltm.config.settings.planted_tasks`); else nothing."""
    return [path for t in planted_tasks(config)
            for path in (KNOWN_ANSWER_TABLE.format(task=t), KNOWN_ANSWER_JSON.format(task=t),
                         *(KNOWN_ANSWER_FIGURE.format(task=t, ext=ext) for ext in FIGURE_FORMATS))]


def final_targets(config: dict) -> list[str]:
    """What a plain `snakemake` run makes: the data tables, every task's matrix tables, figures and analyses,
    a probe task's layer weights, the comparison of each probe task with its fine-tuning twin, and, with a
    planted demo corpus, the known answer of the planted tasks."""
    tasks, probes = list(config["tasks"]), probe_tasks(config)
    return (known_answer_targets(config)
            + ["results/data_summary.tsv", "results/data_report.tsv", "results/preflight/summary.txt"]
            + [f"results/{t}/{name}" for t in tasks for name in MATRIX_TABLES]
            + [f"results/{t}/{fig}.{ext}" for t in tasks for fig in FIGURES for ext in FIGURE_FORMATS]
            + analysis_targets(config)
            + [f"results/{t}/layer_weights.{ext}" for t in probes for ext in ("csv", *FIGURE_FORMATS)]
            + [f"results/compare/{probe}_vs_{twin}.{ext}" for probe, twin in twins(config).items()
               if probe in probes and twin not in probes for ext in ("json", *FIGURE_FORMATS)])


def learning_curve_runs(config: dict, task: str) -> dict:
    """{run JSON: rung size} for every target x rung x single/dual x learning-curve seed. The rung n = N
    is the ordinary grid's single and dual: its runs are reused for the seeds the grid has."""
    n, seeds = task_size(config, task), task_seeds(config, task)
    out = {}
    for target in task_languages(config, task):
        for size in ladder_sizes(config, task):
            for condition in (SINGLE, DUAL):
                for seed in analysis_settings(config)["learning_curve"]["seeds"]:
                    if size == n and seed in seeds:
                        path = run_path(task, target, condition, seed)  # the grid's own run
                    else:
                        path = learning_curve_path(task, target, size, condition, seed)
                    out[path] = size
    return out
