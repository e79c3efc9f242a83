"""The experiment configuration: validation with messages that name the key, digests, and the run grid."""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator

from cltm.errors import CltmError
from cltm.runs import conditions_of, donor_of  # noqa: F401 - donor_of: for the callers that import it from here

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "config" / "schemas" / "config.schema.yaml"


# tasks.<task>.training.precision (absent: fp32, the paper protocol); the schema's enum lists the same
PRECISIONS = ("fp32", "tf32", "bf16")


class ConfigError(CltmError):
    """A configuration value the workflow cannot run with; the message names the key."""


def load_schema(path: str | Path | None = None) -> dict:
    return yaml.safe_load(Path(path or SCHEMA_PATH).read_text())


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def validate_config(config: dict, schema: dict | None = None) -> dict:
    """Check `config` against the JSON schema and the cross-key rules; raise ConfigError listing every problem."""
    schema = schema or load_schema()
    problems = _schema_problems(Draft202012Validator(schema), config) + _task_problems(config, schema)
    if not problems and not enabled_tasks(config):
        problems.append("config key 'tasks': every task is disabled (null); keep at least one, e.g. gender")
    if not problems:
        problems += _semantic_problems(config)
    if problems:
        raise ConfigError("Invalid configuration:\n  - " + "\n  - ".join(problems))
    return config


def _schema_problems(validator, obj, prefix=()) -> list[str]:
    problems = []
    for err in sorted(validator.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path]):
        where = _key([*prefix, *err.absolute_path])
        if err.validator == "additionalProperties":
            allowed = sorted(err.schema.get("properties", {}))
            problems.append(f"config key '{where}': {err.message}; allowed keys here: {', '.join(allowed)}")
        else:
            problems.append(f"config key '{where}': {err.message}")
    return problems


def _task_problems(config: dict, schema: dict) -> list[str]:
    """Each task against the schema of its kind (`$defs/<kind>_task`), then its own checks (classes, map)."""
    from cltm.tasks import TaskError, kind_of, task_kind

    problems = []
    tasks = config.get("tasks") if isinstance(config, dict) else None
    for name, cfg in (tasks if isinstance(tasks, dict) else {}).items():
        if not isinstance(cfg, dict):
            continue
        try:
            kind = kind_of(name, cfg)
        except TaskError as err:
            problems.append(str(err))
            continue
        sub = {**schema["$defs"][f"{kind}_task"], "$defs": schema["$defs"]}
        found = _schema_problems(Draft202012Validator(sub), cfg, ("tasks", name))
        if not found:
            try:
                task_kind(name, cfg)
            except TaskError as err:
                found.append(str(err))
        problems += found
    return problems


def _semantic_problems(config: dict) -> list[str]:
    problems = []
    corpus = config["corpus"]
    kind = corpus["type"]
    section = corpus.get(kind) or {}
    if kind == "common_voice" and not section.get("root"):
        problems.append(
            "config key 'corpus.common_voice.root' must name the release folder, e.g. /data/cv-corpus-22.0-2025-06-20 "
            "(it holds one folder per locale: <root>/<locale>/validated.tsv, clips/); config/paper.yaml leaves it "
            "to you: pass --config corpus='{common_voice: {root: /your/release}}' or set it in your own config file"
        )
    if kind == "manifest" and not section.get("path"):
        problems.append("config key 'corpus.manifest.path' must name a CSV/TSV manifest")
    if kind == "demo":
        from cltm.demo.synth import SUPPORTED_LANGUAGES

        for lang in all_languages(config):
            if lang not in SUPPORTED_LANGUAGES:
                problems.append(
                    f"config key 'languages': the synthetic demo corpus has no language '{lang}'; "
                    f"it supports {', '.join(sorted(SUPPORTED_LANGUAGES))}"
                )
    enc = config["encoder"]
    if enc["source"] == "random" and not enc.get("config"):
        problems.append("config key 'encoder.config' must give the model's sizes (HubertConfig keys, or another family's with "
                        "model_type) when encoder.source is 'random'")
    for task in enabled_tasks(config):
        for lang in task_languages(config, task):
            if lang not in config["languages"]:
                problems.append(f"config key 'tasks.{task}.languages': '{lang}' is not in 'languages'")
    test = config["data"]["test"]
    if test["max_clips_per_speaker"] < test["min_clips_per_speaker"]:
        problems.append("config key 'data.test.max_clips_per_speaker' is smaller than 'data.test.min_clips_per_speaker'")
    return problems


def enabled_tasks(config: dict) -> list[str]:
    """The tasks to run: `tasks.<task>: null` in a config file disables that task (configs merge key by key,
    so leaving a task out of your own file keeps the default's)."""
    return [t for t, v in (config.get("tasks") or {}).items() if v is not None]


def expand_twins(config: dict) -> dict:
    """A task with `subsets_from: <other>` (a probe instance beside its fine-tuning twin, README "Probe
    mode") runs on the other task's subsets, test sets and trials: it takes every key of that task it
    does not set itself (kind, labels, N, metric, languages, training), in place, before validation.
    Selection skips it (`cltm.sampling.selection_config`), and the report compares the two matrices."""
    tasks = config.get("tasks") if isinstance(config, dict) else None
    if not isinstance(tasks, dict):
        return config
    for name, cfg in list(tasks.items()):
        if not isinstance(cfg, dict) or "subsets_from" not in cfg:
            continue
        twin = cfg["subsets_from"]
        key = f"config key 'tasks.{name}.subsets_from'"
        if twin == name or not isinstance(tasks.get(twin), dict):
            raise ConfigError(f"{key}: '{twin}' is not another enabled task of the config; name the task whose "
                              f"subsets this one reuses, e.g. subsets_from: gender")
        if "subsets_from" in tasks[twin]:
            raise ConfigError(f"{key}: '{twin}' reuses the subsets of '{tasks[twin]['subsets_from']}' itself; "
                              f"name that task instead")
        inherited = {k: v for k, v in tasks[twin].items() if k not in ("mode", "probe", "display_name")}
        if twin in ("gender", "speaker"):  # the kind a name implies is not written in its section
            inherited.setdefault("kind", "classification" if twin == "gender" else "speaker_verification")
            if twin == "gender":
                inherited.setdefault("label_column", "gender")
        tasks[name] = {**inherited, **cfg}
    return config


def twins(config: dict) -> dict[str, str]:
    """{task: the task whose subsets it reuses} (`subsets_from`)."""
    return {t: c["subsets_from"] for t, c in (config.get("tasks") or {}).items()
            if isinstance(c, dict) and c.get("subsets_from")}


def drop_disabled_tasks(config: dict) -> dict:
    """Remove the disabled (null) tasks from `config` in place, after validation, so that every later use of
    config["tasks"] (rules, selection, preflight) sees the tasks that run only."""
    for task in [t for t, v in config["tasks"].items() if v is None]:
        del config["tasks"][task]
    return config


def cuda_problem(config: dict) -> str | None:
    """Why `device: cuda` cannot work on this machine, or None. Only meaningful where the jobs run."""
    if config.get("device") != "cuda":
        return None
    import torch

    if torch.cuda.is_available():
        return None
    build = f"torch {torch.__version__}" + (" (a CPU-only build)" if torch.version.cuda is None else "")
    return ("config key 'device' is cuda, but this machine has no usable CUDA GPU "
            f"(torch.cuda.is_available() is false; {build}). Run on a GPU node (e.g. `--profile slurm`, which "
            "submits the fine-tuning jobs to GPU nodes, or inside a GPU job), install a CUDA build of torch, "
            "or set device: auto (uses a GPU where there is one) or cpu")


def check_paths(config: dict) -> None:
    """Check that the corpus and a local encoder directory exist; raise ConfigError naming the key."""
    problems = []
    corpus = config["corpus"]
    if corpus["type"] == "common_voice":
        root = Path(corpus["common_voice"]["root"]).expanduser()
        if not root.is_dir():
            problems.append(f"config key 'corpus.common_voice.root': {root} is not a folder; it must be the "
                            "Common Voice release folder that holds one folder per locale")
        else:
            missing = [lang for lang in config["languages"] if not (root / lang).is_dir()]
            if missing:
                present = sorted(p.name for p in root.iterdir() if p.is_dir())
                problems.append(f"config key 'languages': no folder for {', '.join(missing)} in {root} "
                                f"(locales present: {', '.join(present[:60]) or 'none'}); Common Voice names "
                                "some locales with a region, e.g. zh-CN, sv-SE, hy-AM")
    if corpus["type"] == "manifest" and not Path(corpus["manifest"]["path"]).expanduser().is_file():
        problems.append(f"config key 'corpus.manifest.path': {corpus['manifest']['path']} is not a file")
    kind, where = encoder_source_kind(config["encoder"]["source"])
    if kind == "missing":
        problems.append(f"config key 'encoder.source': the directory {where} does not exist (relative paths are "
                        f"taken from the working directory, {Path.cwd()}); a local directory must hold config.json "
                        "and model.safetensors, a hub id looks like utter-project/mHuBERT-147")
    elif kind == "local" and not (Path(where) / "config.json").is_file():
        problems.append(f"config key 'encoder.source': {where} has no config.json; save the model there with "
                        f"save_pretrained, or download it with `hf download <hub id> --local-dir {where}`")
    if problems:
        raise ConfigError("Invalid configuration:\n  - " + "\n  - ".join(problems))


HUB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def encoder_source_kind(source: str) -> tuple[str, str]:
    """('random' | 'local' | 'missing' | 'hub', resolved source).

    - a source that exists on disk is a local directory;
    - one written as a path that does not exist is 'missing': it starts with /, ./, ../ or ~, has more than one
      slash, or is `name/rest` where `name` is an existing local folder (`models/does-not-exist`), or is not
      a valid hub name (`org/name` of letters, digits, `.`, `_`, `-`, no `..`);
    - anything else is a hub id (`utter-project/mHuBERT-147`, or a legacy id without an organisation).
    """
    if source == "random":
        return "random", source
    path = Path(source).expanduser()
    if path.exists():
        return "local", str(path.resolve())
    parts = source.split("/")
    looks_like_path = (
        source.startswith(("/", "./", "../", "~"))
        or len(parts) > 2
        or "\\" in source
        or (len(parts) == 2 and Path(parts[0]).is_dir())
        or not all(HUB_NAME.match(p) and ".." not in p for p in parts)
    )
    if looks_like_path:
        return "missing", str(path)
    return "hub", source


def all_languages(config: dict) -> list[str]:
    return list(config["languages"])


def task_languages(config: dict, task: str) -> list[str]:
    """Languages of one task's matrix: `tasks.<task>.languages` if given, else `languages`."""
    return list(config["tasks"][task].get("languages") or config["languages"])


def conditions(config: dict, task: str, target: str) -> list[str]:
    """single, dual and one `donor-<lang>` per other language of the task (names: `cltm.runs`)."""
    return conditions_of(target, task_languages(config, task))


def min_speakers(n: int, fraction: float) -> int:
    """At least ceil(fraction * n) speakers, and never fewer than 2 (a classifier needs two classes)."""
    return max(2, math.ceil(fraction * n - 1e-9))


def digest(obj) -> str:
    """Short stable hash of a JSON-able object (sorted keys), recorded in every run."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def canonical(obj):
    """`obj` with every mapping's keys sorted, recursively. Snakemake records a job's params by their
    repr, so the same settings written in another key order would otherwise rerun the grid."""
    if isinstance(obj, dict):
        return {k: canonical(obj[k]) for k in sorted(obj, key=str)}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    return obj


def run_settings(config: dict, task: str) -> dict:
    """Everything that determines a run's result besides target, condition and seed."""
    return {
        "corpus": {"type": config["corpus"]["type"], **(config["corpus"].get(config["corpus"]["type"]) or {})},
        "data": config["data"],
        # a probe task trains no encoder: its twin's `training` (inherited, unread) is not its setting
        "task": {k: v for k, v in config["tasks"][task].items()
                 if k != "languages" and not (k == "training" and config["tasks"][task].get("mode") == "probe")},
        "encoder": encoder_settings(config),
    }


def encoder_settings(config: dict) -> dict:
    enc = dict(config["encoder"])
    if enc["source"] != "random":
        enc.pop("config", None)
        enc.pop("init_seed", None)
    return enc


def is_synthetic(config: dict) -> bool:
    return config["corpus"]["type"] == "demo"


def _merge(base: dict, update: dict) -> dict:
    """Snakemake's merge of config files: mappings merge key by key; anything else (lists, null) replaces."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def check_files(paths) -> dict:
    """Parse config files as Snakemake would merge them over config/config.yaml; raise ConfigError naming the
    file, line and column of a YAML syntax error, or the key of an invalid value."""
    config = yaml.safe_load((SCHEMA_PATH.parents[1] / "config.yaml").read_text())
    for path in paths:
        try:
            update = yaml.safe_load(Path(path).read_text())
        except OSError as err:
            raise ConfigError(f"config file {path}: {err.strerror}") from None
        except yaml.YAMLError as err:
            raise ConfigError(yaml_error_message(path, err)) from None
        if not isinstance(update, dict):
            raise ConfigError(f"config file {path} must hold keys at the top level (it holds {type(update).__name__})")
        _merge(config, update)
    validate_config(config)
    check_paths(config)
    return config


def yaml_error_message(path, err) -> str:
    """`config file F, line L, column C: YAML syntax error: <problem> (<context> at line L', column C')`."""
    mark, context = getattr(err, "problem_mark", None), getattr(err, "context_mark", None)
    where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    text = getattr(err, "problem", None) or str(err)
    if getattr(err, "context", None):
        at = f" started at line {context.line + 1}, column {context.column + 1}" if context is not None else ""
        text += f" ({err.context}{at})"
    return f"config file {path}{where}: YAML syntax error: {text}"


def main(argv=None) -> int:
    """`python -m cltm.config my_experiment.yaml [more.yaml]`: check config files before running Snakemake."""
    import sys

    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print("usage: python -m cltm.config CONFIG.yaml [MORE.yaml ...]", file=sys.stderr)
        return 2
    try:
        check_files(paths)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"{', '.join(map(str, paths))}: valid (merged over config/config.yaml)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
