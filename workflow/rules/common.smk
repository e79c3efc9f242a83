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
# Snakemake runs `script:` jobs as `<sys.executable> <script>` without quoting the interpreter: in a
# checkout (or venv) whose path holds a space every such job would exit 127. Quoted, the shell finds it.
if any(c.isspace() for c in sys.executable) and not sys.executable.startswith("'"):
    import shlex

    sys.executable = shlex.quote(sys.executable)

from cltm.config import (  # noqa: E402
    ConfigError,
    canonical,
    check_paths,
    conditions,
    cuda_problem,
    digest,
    drop_disabled_tasks,
    encoder_settings,
    encoder_source_kind,
    expand_twins,
    is_synthetic,
    run_settings,
    task_languages,
    twins,
    validate_config,
)
from cltm.results import FIGURES  # noqa: E402
from cltm.runs import (  # noqa: E402 - the conditions' names and the run path scheme, one definition
    AUDIO,
    AUDIO_INDEX,
    CELL_JSON,
    CELL_LOG,
    CONDITION_PATTERN,
    LANGUAGE_PATTERN,
    RUN_JSON,
    RUN_LOG,
    SETTINGS,
    SUBSETS,
    donor_of,
)
from cltm.sampling import selection_config  # noqa: E402
from cltm.tasks import label_columns, task_kind  # noqa: E402

# a relative encoder.source is taken from the working directory, else from the workflow's folder (so that
# the default config's shipped model is found with `-s path/to/Snakefile` from elsewhere)
_source = Path(str((config.get("encoder") or {}).get("source") or ".")).expanduser()
if (
    not _source.is_absolute()
    and not _source.exists()
    and (Path(workflow.basedir) / _source).exists()
):
    config["encoder"]["source"] = str(Path(workflow.basedir) / _source)

try:
    expand_twins(
        config
    )  # a task with `subsets_from` takes its twin's keys first (README, "Probe mode")
    validate_config(config)
    check_paths(config)
    drop_disabled_tasks(config)  # `tasks.<task>: null` runs without that task
except ConfigError as err:
    raise WorkflowError(str(err)) from None

# Keys in one order, whatever order the config files wrote them in: Snakemake records every job's
# params by their repr, so the same settings written in another order would rerun the grid.
_canonical = canonical(config)
config.clear()
config.update(_canonical)


def check_device():
    """`device: cuda` where jobs run locally: stop before any job when this machine has no CUDA. On a
    cluster executor (SLURM) the jobs run on GPU nodes, so the login node is not checked.
    """
    if (
        workflow.local_exec
        and not workflow.touch
        and any(j.rule.name == "finetune" for j in workflow.dag.needrun_jobs())
    ):
        problem = cuda_problem(config)
        if problem:
            raise WorkflowError(problem)


TASKS = list(config["tasks"])
# fine-tuning tasks train the encoder per run (rule finetune); probe tasks train a head on features
# extracted once per clip (rules features, probe; README "Probe mode")
PROBE_TASKS = [t for t in TASKS if config["tasks"][t].get("mode") == "probe"]
FINETUNE_TASKS = [t for t in TASKS if t not in PROBE_TASKS]
TWINS = twins(config)  # {task: the task whose subsets it reuses}
# where a language's features for the probe tasks are kept: per encoder (its settings' digest), so that
# another encoder extracts its own and switching back finds them again
ENCODER_DIGEST = digest(encoder_settings(config))[:12]
FEATURES = f"results/features/{ENCODER_DIGEST}/{{lang}}.npy"
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
    lang=LANGUAGE_PATTERN,
    target=LANGUAGE_PATTERN,
    condition=CONDITION_PATTERN,
    seed=r"\d+",


def warn_on_changed_settings():
    """Say so when a task's existing runs were made under other settings: the usual cause is a
    command without the experiment's --configfile (e.g. rerunning one cell with -f), which would
    otherwise quietly rerun that cell under the demo's settings."""
    import json

    from snakemake.logging import logger

    for task in TASKS:
        path = Path(SETTINGS.format(task=task))
        try:
            before = json.loads(path.read_text())["digest"]
        except (OSError, ValueError, KeyError):
            continue
        now = digest(run_settings(config, task))
        if before != now:
            logger.warning(
                f"cltm: the settings of task '{task}' differ from those its runs were made with "
                f"({path}: {before}, this config: {now}); every {task} run this command plans uses the new "
                "settings. If you meant to work on the existing experiment, pass the same --configfile as before."
            )


CONFIG_RECORD = Path("results/.cltm/config_files.json")


def config_files():
    """The config files of this command, relative to the working directory where they lie inside it (so
    that a results folder copied or moved with its config files keeps its record)."""
    here = Path.cwd().resolve()
    out = []
    for f in workflow.configfiles:
        path = Path(f).resolve()
        out.append(
            str(path.relative_to(here)) if path.is_relative_to(here) else str(path)
        )
    return out


def check_same_config_files():
    """Stop a run (onstart: before any job; dry runs and --unlock are not stopped) whose config files
    differ from those results/ was made with: the usual cause is a forgotten --configfile (e.g.
    rerunning one cell with -f), which would otherwise rebuild the corpus, the selections and the cell
    under the demo's config, and then the whole grid again."""
    import json

    try:
        before = json.loads(CONFIG_RECORD.read_text())["configfiles"]
    except (OSError, ValueError, KeyError):
        return
    now = config_files()
    if before != now and os.environ.get("CLTM_NEW_CONFIG") != "1":
        given = [
            f
            for f in before
            if Path(f).name != "config.yaml" or Path(f).parent.name != "config"
        ]
        raise WorkflowError(
            f"results/ was made with the config file(s) {', '.join(before)}; this command reads "
            f"{', '.join(now)}. Pass the same files again"
            + (f" (--configfile {' '.join(given)})" if given else "")
            + ". To go on in this results/ folder with other config files on purpose, set CLTM_NEW_CONFIG=1 "
            f"once (it updates {CONFIG_RECORD}); to start another experiment, use another working directory "
            "(snakemake --directory DIR)."
        )


def check_and_record_config_files():
    """At the start of a run (onstart): stop on other config files, else record these."""
    from cltm.io import write_json

    check_same_config_files()
    write_json(CONFIG_RECORD, {"configfiles": config_files()})


if workflow.is_main_process:
    warn_on_changed_settings()


def prepare_kept_runs():
    """Before any job (onstart): a run named with -f (or --forcerun) is trained again, so its kept copy
    is dropped (cltm.cells.forget); results/ made by a version without kept runs has its finished runs
    adopted once (cltm.cells.adopt_existing), so that its cell jobs reuse them."""
    from cltm.cells import adopt_existing, forget

    adopted = adopt_existing()
    if adopted:
        print(
            f"cltm: {adopted} finished run(s) found in results/ are kept for reuse",
            file=sys.stderr,
        )
    settings = workflow.dag_settings
    named = set(settings.forcerun) | (
        set(settings.targets) if settings.forcetargets else set()
    )
    for name in forget(sorted(named)):
        print(f"cltm: {name} will be trained again (named with -f)", file=sys.stderr)


def encoder_files(wildcards):
    """A local encoder directory's model files, so that replacing the model rebuilds results/encoder/."""
    if ENCODER_KIND != "local":
        return []
    folder = Path(config["encoder"]["source"]).expanduser()
    return sorted(
        str(f)
        for f in folder.iterdir()
        if f.suffix in (".json", ".safetensors", ".bin")
    )


def manifest_corpus():
    """The corpus section that manifest jobs read, plus the label columns the tasks need (age, emotion):
    left as it is when they need none, so existing manifests are not redone."""
    columns = label_columns(config)
    return {**config["corpus"], "columns": columns} if columns else config["corpus"]


def task_of(name):
    """The task object of `tasks.<name>` (cltm.tasks): kind, display name, metric, runtime."""
    return task_kind(name, config["tasks"][name])


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


def test_speakers_inputs(wildcards):
    lang = wildcards.lang
    return {
        "manifest": f"results/manifests/{lang}.tsv",
        "settings": f"results/selection/{lang}.settings.json",
        "labels": f"results/selection/{lang}.speakers.tsv",
        # every language's speakers; `ancient`: a new language (which redoes the index) leaves this one alone
        "index": ancient("results/selection/speakers.tsv"),
    }


def select_inputs(wildcards):
    return {
        **test_speakers_inputs(wildcards),
        "test": f"results/selection/{wildcards.lang}.test.json",
        "test_index": ancient("results/selection/test_speakers.json"),
    }


def run_languages(wildcards):
    """The target, plus the donor for a bilingual condition."""
    donor = donor_of(wildcards.condition)
    return [wildcards.target] + ([donor] if donor else [])


def subsets_task(task):
    """The task whose subsets a task reads: its own, or its twin's (`subsets_from`)."""
    return TWINS.get(task, task)


def tasks_pattern(tasks):
    """A wildcard constraint matching exactly these task names (none: a name no task has)."""
    return "|".join(tasks) if tasks else "(?!)"


def cell_inputs(wildcards):
    """What a cell's (or one run's) job reads: a fine-tuning task's audio, a probe task's features."""
    if wildcards.task in PROBE_TASKS:
        return probe_inputs(wildcards)
    return finetune_inputs(wildcards)


def probe_inputs(wildcards):
    """A probe cell reads the features of its languages (`audio` of its runs) and, for the runs' key,
    the encoder's weights."""
    langs = run_languages(wildcards)
    task = subsets_task(wildcards.task)
    return {
        "settings": SETTINGS.format(task=wildcards.task),
        "encoder": "results/encoder/model.safetensors",
        "subsets": [SUBSETS.format(task=task, lang=l) for l in langs],
        "audio": [FEATURES.format(lang=l) for l in langs],
    }


def features_settings(wildcards):
    """Per probe task reading this language: its kind, the statistics its head asks for (null: the
    kind's default, cltm.probe.DEFAULTS), its test-time trimming, the task whose subsets it reads.
    """
    out = {}
    for t in PROBE_TASKS:
        if wildcards.lang in task_languages(config, t):
            cfg = config["tasks"][t]
            out[t] = {
                "kind": task_of(t).kind,
                "stats": (cfg.get("probe") or {}).get("stats"),
                "trim_db": cfg.get("trim_db"),
                "subsets_from": subsets_task(t),
            }
    return out


def features_inputs(wildcards):
    """A language's features: its audio, the encoder, and the subsets of the probe tasks that read it."""
    tasks = sorted(
        {
            subsets_task(t)
            for t in PROBE_TASKS
            if wildcards.lang in task_languages(config, t)
        }
    )
    return {
        "audio": AUDIO.format(lang=wildcards.lang),
        "encoder": "results/encoder/model.safetensors",
        "subsets": [SUBSETS.format(task=t, lang=wildcards.lang) for t in tasks],
    }


def finetune_inputs(wildcards):
    langs = run_languages(wildcards)
    return {
        "settings": SETTINGS.format(task=wildcards.task),
        # the weights; config.json and preprocessor_config.json beside them come from the same job
        "encoder": "results/encoder/model.safetensors",
        # every language prepared and checked (no speaker leakage) before any GPU hour; `ancient`: it
        # orders the jobs only, so a new language (which redoes the report) leaves existing runs alone.
        # (Cells are not job groups on SLURM: with groups, this edge made Snakemake walk every
        # language's jobs once per cell.) Each run also checks its own speakers before it trains
        # (cltm.runner.check_run_speakers).
        "data_report": ancient("results/data_report.tsv"),
        "subsets": [
            SUBSETS.format(task=subsets_task(wildcards.task), lang=l) for l in langs
        ],
        # each .npy's index (.tsv) is read beside it, written by the same job (one input per language
        # keeps Snakemake's work per cell down; cltm.cells keys a run on the index's contents too)
        "audio": [AUDIO.format(lang=l) for l in langs],
    }


def cell_files(task):
    """The cell files of a task's grid (cltm.runs.CELL_JSON): what the matrix is assembled from."""
    return [
        CELL_JSON.format(task=task, target=target, condition=condition)
        for target in task_languages(config, task)
        for condition in conditions(config, task, target)
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
        # a probe task's layer weights per target (rule layer_weights)
        + [f"results/{t}/layer_weights.{ext}" for t in PROBE_TASKS for ext in ("csv", "png", "svg")]
        # a probe task beside its fine-tuning twin: their agreement (rule compare_modes)
        + [
            f"results/compare/{probe}_vs_{twin}.{ext}"
            for probe, twin in TWINS.items()
            if probe in PROBE_TASKS and twin in FINETUNE_TASKS
            for ext in ("json", "png", "svg")
        ]
    )
