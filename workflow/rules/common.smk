# Helper functions: the run grid, inputs of each job and the final targets. Config is validated here.
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC)


def prepend_to_env(name, value):
    """Put `value` first in a path-like environment variable inherited by every job."""
    os.environ[name] = os.pathsep.join(p for p in (value, os.environ.get(name)) if p)


# jobs (local, or re-executed on a cluster node) import the package from this checkout, and shell
# jobs call `python`: the interpreter running Snakemake (with --sdm conda, the env's comes first)
prepend_to_env("PYTHONPATH", SRC)
prepend_to_env("PATH", str(Path(sys.executable).parent))

from cltm.config import (  # noqa: E402
    ConfigError,
    check_paths,
    conditions,
    digest,
    donor_of,
    encoder_settings,
    encoder_source_kind,
    is_synthetic,
    run_settings,
    task_languages,
    validate_config,
)
from cltm.sampling import selection_config  # noqa: E402

try:
    validate_config(config)
    check_paths(config)
except ConfigError as err:
    raise WorkflowError(str(err)) from None

TASKS = list(config["tasks"])
LANGUAGES = list(config["languages"])
SEEDS = list(config["seeds"])
SYNTHETIC = is_synthetic(config)
ENCODER_KIND = encoder_source_kind(config["encoder"]["source"])[0]
DEMO_NOTE = (
    "SYNTHETIC DEMO DATA (eSpeak NG voices, encoder "
    + ("tiny random" if ENCODER_KIND == "random" else config["encoder"]["source"])
    + ")"
    if SYNTHETIC
    else ""
)


wildcard_constraints:
    task="|".join(TASKS),
    lang="[A-Za-z0-9-]+",
    target="[A-Za-z0-9-]+",
    condition="single|dual|donor-[A-Za-z0-9-]+",
    seed=r"\d+",


def encoder_files(wildcards):
    """A local encoder directory's model files, so that replacing the model rebuilds results/encoder/."""
    if ENCODER_KIND != "local":
        return []
    folder = Path(config["encoder"]["source"]).expanduser()
    return sorted(
        str(f) for f in folder.iterdir() if f.suffix in (".json", ".safetensors", ".bin")
    )


def tasks_of(lang):
    return [t for t in TASKS if lang in task_languages(config, t)]


def corpus_input(wildcards):
    """The files a language's manifest is read from, so that a changed clip list reruns selection."""
    kind = config["corpus"]["type"]
    if kind == "demo":
        return f"results/demo_corpus/{wildcards.lang}/validated.tsv"
    if kind == "common_voice":
        cv = config["corpus"]["common_voice"]
        return str(Path(cv["root"]) / wildcards.lang / cv["tsv"])
    return config["corpus"]["manifest"]["path"]


def subset_files():
    return [
        f"results/subsets/{t}/{l}.json"
        for t in TASKS
        for l in task_languages(config, t)
    ]


def run_languages(wildcards):
    """The target, plus the donor for a bilingual condition."""
    donor = donor_of(wildcards.condition)
    return [wildcards.target] + ([donor] if donor else [])


def finetune_inputs(wildcards):
    langs = run_languages(wildcards)
    return {
        "settings": f"results/{wildcards.task}/settings.json",
        "encoder": "results/encoder/model.safetensors",
        "data_report": "results/data_report.tsv",  # every language prepared and checked
        "subsets": [f"results/subsets/{wildcards.task}/{l}.json" for l in langs],
        "audio": [f"results/audio/{l}.npy" for l in langs],
        "index": [f"results/audio/{l}.tsv" for l in langs],  # read beside each .npy
    }


def run_files(task, suffix=".json"):
    return [
        f"results/{task}/runs/{target}/{condition}/seed{seed}{suffix}"
        for target in task_languages(config, task)
        for condition in conditions(config, task, target)
        for seed in SEEDS
    ]


def task_settings(wildcards):
    return run_settings(config, wildcards.task)


def task_digest(wildcards):
    return digest(run_settings(config, wildcards.task))


MATRIX_TABLES = [
    "runs.csv",
    "cltm.csv",
    "cltm_se.csv",
    "relative_change.csv",
    "relative_change_se.csv",
    "baselines.csv",
    "cells.csv",
    "summary.json",
]
FIGURES = ["cltm", "relative_change", "baselines"]


def final_targets():
    return (
        [
            "results/data_summary.tsv",
            "results/data_report.tsv",
            "results/preflight/summary.txt",
        ]
        + [f"results/{t}/{name}" for t in TASKS for name in MATRIX_TABLES]
        + [
            f"results/{t}/{fig}.{ext}"
            for t in TASKS
            for fig in FIGURES
            for ext in ("png", "svg")
        ]
        + ANALYSIS_TARGETS  # workflow/rules/analysis.smk
    )
