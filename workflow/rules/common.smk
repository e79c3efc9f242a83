# Input functions and targets of the rules. The config is validated here; what it means (the grid, the
# targets, the path scheme) is computed by the package (cltm.config, cltm.paths).
import os
import sys
import time
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
    all_languages,
    canonical,
    check_paths,
    conditions,
    digest,
    drop_disabled_tasks,
    encoder_settings,
    encoder_source_kind,
    expand_twins,
    is_synthetic,
    matrix_settings,
    run_settings,
    selection_config,
    task_languages,
    task_seeds,
    twins,
    validate_config,
)
from cltm.config.record import (
    check_and_record_config_files,
    settings_changes,
)  # noqa: E402
from cltm.config.targets import cell_files, final_targets, probe_tasks  # noqa: E402
from cltm.grid.cell import event_summary  # noqa: E402
from cltm.grid.kept import RETRAIN, prepare_kept_runs  # noqa: E402
from cltm.paths import (  # noqa: E402 - the conditions' names and the path scheme, one definition
    AUDIO,
    AUDIO_INDEX,
    CELL_JSON,
    CELL_LOG,
    CONDITION_PATTERN,
    PLANT,
    ENCODER,
    FEATURES,
    LANGUAGE_PATTERN,
    RUN_JSON,
    RUN_LOG,
    SETTINGS,
    SUBSETS,
    donor_of,
)
from cltm.tasks import label_columns, make_task  # noqa: E402

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
    )  # a task with `subsets_from` takes its twin's keys first (docs/tasks.md, "Probe mode")
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
        config["device"] == "cuda"
        and workflow.local_exec
        and not workflow.touch
        and any(j.rule.name == "finetune" for j in workflow.dag.needrun_jobs())
    ):
        from cltm.model.device import cuda_problem  # torch, only for device: cuda

        problem = cuda_problem(config)
        if problem:
            raise WorkflowError(problem)


TASKS = list(config["tasks"])
# fine-tuning tasks train the encoder per run (rule finetune); probe tasks train a head on features
# extracted once per clip (rules features, probe; docs/tasks.md, "Probe mode")
PROBE_TASKS = probe_tasks(config)
FINETUNE_TASKS = [t for t in TASKS if t not in PROBE_TASKS]
TWINS = twins(config)  # {task: the task whose subsets it reuses}
# where a language's features for the probe tasks are kept: per encoder (its settings' digest), so that
# another encoder extracts its own and switching back finds them again
ENCODER_DIGEST = digest(encoder_settings(config))[:12]
LANGUAGE_FEATURES = FEATURES.replace("{encoder}", ENCODER_DIGEST)
# `languages` and any other a task reads (docs/configuration.md)
LANGUAGES = all_languages(config)
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


# how rows are flagged and the level of each cell's interval (a deprecated matrix.flag_z is read here)
MATRIX, MATRIX_MESSAGES = matrix_settings(config)

if workflow.is_main_process:
    # a task's runs made under other settings: usually a forgotten --configfile (cltm.config.record)
    from snakemake.logging import logger

    for message in settings_changes(config, TASKS) + MATRIX_MESSAGES:
        logger.warning(message)


def record_config_files():
    """onstart: stop on other config files than results/ was made with, else record these."""
    try:
        check_and_record_config_files(workflow.configfiles, Path.cwd())
    except ConfigError as err:
        raise WorkflowError(str(err)) from None


RUN_STARTED = time.time()  # the end-of-run summary counts the cell jobs since


def keep_or_forget_runs():
    """onstart: adopt a results/ made before kept runs; drop the kept copy of every run named with -f, and
    of the runs CLTM_RETRAIN names; name the kept runs that other code made."""
    settings = workflow.dag_settings
    prepare_kept_runs(
        settings.forcerun,
        settings.targets,
        settings.forcetargets,
        log=lambda m: print(m, file=sys.stderr),
        retrain=os.environ.get(RETRAIN),
    )


def say_what_happened():
    """onsuccess and onerror: one line per task, runs trained, put back and resumed by this command."""
    settings = workflow.dag_settings
    forced = bool(settings.forcerun) or bool(getattr(settings, "forceall", False))
    for line in event_summary(since=RUN_STARTED, forced=forced):
        print(line, file=sys.stderr)


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
    return make_task(name, config["tasks"][name])


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
        "encoder": ENCODER,
        "subsets": [SUBSETS.format(task=task, lang=l) for l in langs],
        "audio": [LANGUAGE_FEATURES.format(lang=l) for l in langs],
    }


def features_settings(wildcards):
    """Per probe task reading this language: its kind, the statistics its head asks for (null: the
    kind's default, cltm.defaults.PROBE), its test-time trimming, the task whose subsets it reads.
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
                # test-time speeds: only where set, so that stores made before the key are not redone
                **(
                    {
                        "tta_speeds": cfg["tta_speeds"],
                        "sample_rate": config["data"]["sample_rate"],
                    }
                    if cfg.get("tta_speeds")
                    else {}
                ),
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
        "encoder": ENCODER,
        "subsets": [SUBSETS.format(task=t, lang=wildcards.lang) for t in tasks],
    }


def finetune_inputs(wildcards):
    langs = run_languages(wildcards)
    return {
        "settings": SETTINGS.format(task=wildcards.task),
        # the weights; config.json and preprocessor_config.json beside them come from the same job
        "encoder": ENCODER,
        # every language prepared and checked (no speaker leakage) before any GPU hour; `ancient`: it
        # orders the jobs only, so a new language (which redoes the report) leaves existing runs alone.
        # (Cells are not job groups on SLURM: with groups, this edge made Snakemake walk every
        # language's jobs once per cell.) Each run also checks its own speakers before it trains
        # (cltm.data.speakers.check_run_speakers).
        "data_report": ancient("results/data_report.tsv"),
        "subsets": [
            SUBSETS.format(task=subsets_task(wildcards.task), lang=l) for l in langs
        ],
        # each .npy's index (.tsv) is read beside it, written by the same job (one input per language
        # keeps Snakemake's work per cell down; cltm.grid.kept keys a run on the index's contents too)
        "audio": [AUDIO.format(lang=l) for l in langs],
    }


def task_settings(wildcards):
    return run_settings(config, wildcards.task)


def task_digest(wildcards):
    return digest(run_settings(config, wildcards.task))
