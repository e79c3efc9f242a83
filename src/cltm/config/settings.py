"""What a validated config means: the tasks that run, their languages and conditions, the settings a run
depends on (and their digests), and the part each stage reads. Pure functions of the config dict."""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

from cltm.defaults import ANALYSIS, MATRIX
from cltm.errors import ConfigError
from cltm.paths import conditions_of
from cltm.tasks import DEFAULT_KIND

# the languages the synthetic demo corpus speaks: cltm language code (Common Voice locale) -> eSpeak NG
# voice name, checked against espeak-ng-data/lang (cltm.demo.synth)
DEMO_LANGUAGES: dict[str, str] = {
    "en": "en",  # English (Great Britain), West Germanic
    "de": "de",  # German, West Germanic
    "es": "es",  # Spanish (Spain), Romance
    "ru": "ru",  # Russian, East Slavic
    "fi": "fi",  # Finnish, Uralic
    "tr": "tr",  # Turkish, Turkic
    "eu": "eu",  # Basque, isolate
}


def enabled_tasks(config: dict) -> list[str]:
    """The tasks to run: `tasks.<task>: null` in a config file disables that task (configs merge key by key,
    so leaving a task out of your own file keeps the default's)."""
    return [t for t, v in (config.get("tasks") or {}).items() if v is not None]


def switch_off_unplanted(config: dict) -> dict:
    """A task with `needs_plant: true` (the demo's planted task, which reads the label the demo corpus plants)
    is switched off, like `tasks.<task>: null`, where there is no plant to read: another corpus, or
    `corpus.demo.plant: null`; so is a probe twin of it. A real experiment merged over the demo's config
    therefore runs without it and need not name it."""
    tasks = config.get("tasks")
    if not isinstance(tasks, dict) or plant_settings(config) is not None:
        return config
    off = {t for t, c in tasks.items() if isinstance(c, dict) and c.get("needs_plant")}
    off |= {t for t, c in tasks.items() if isinstance(c, dict) and c.get("subsets_from") in off}
    for task in off:
        tasks[task] = None
    return config


def expand_twins(config: dict) -> dict:
    """A task with `subsets_from: <other>` (a probe instance beside its fine-tuning twin, docs/tasks.md "Probe
    mode") runs on the other task's subsets, test sets and trials: it takes every key of that task it
    does not set itself (kind, labels, N, metric, languages, training), in place, before validation.
    Selection skips it (`selection_config`), and the report compares the two matrices."""
    tasks = config.get("tasks") if isinstance(config, dict) else None
    if not isinstance(tasks, dict):
        return config
    switch_off_unplanted(config)
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
        if twin in DEFAULT_KIND:  # the kind a name implies is not written in its section
            inherited.setdefault("kind", DEFAULT_KIND[twin])
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
    """Every language the workflow reads: `languages`, then any other of an enabled task's own languages
    (the demo's planted task reads two demo languages that gender and speaker do not)."""
    out = list(config["languages"])
    for cfg in (config.get("tasks") or {}).values():
        for lang in (cfg or {}).get("languages") or []:
            if lang not in out:
                out.append(lang)
    return out


def task_languages(config: dict, task: str) -> list[str]:
    """Languages of one task's matrix: `tasks.<task>.languages` if given, else `languages`."""
    return list(config["tasks"][task].get("languages") or config["languages"])


def task_seeds(config: dict, task: str) -> list[int]:
    """Run seeds of one task: `tasks.<task>.seeds` if given (a probe twin inherits its twin's), else `seeds`."""
    return [int(s) for s in (config["tasks"][task].get("seeds") or config["seeds"])]


def draw_seeds(config: dict, task: str) -> list[int]:
    """The run seeds a task's selection draws training subsets for (resample `per_seed`): its own seeds and
    those of every twin that reuses its subsets (a probe twin may run more seeds than its fine-tuning task,
    its runs being cheap: each extra seed gets its own draw from the same rules)."""
    seeds = set(task_seeds(config, task))
    for name, twin in twins(config).items():
        if twin == task:
            seeds |= set(task_seeds(config, name))
    return sorted(seeds)


def task_resample(config: dict, task: str) -> str:
    """How a task's run seeds get their training subsets: `tasks.<task>.resample` if given, else
    `data.resample` (`none`: the data seed's subsets for every seed; `per_seed`: each seed its own draw).
    A probe twin (`subsets_from`) reads its twin's subsets, draws included."""
    cfg = config["tasks"][task]
    source = config["tasks"].get(cfg.get("subsets_from"), cfg)  # no subsets_from: the task itself
    return source.get("resample") or config["data"].get("resample", "none")


def conditions(config: dict, task: str, target: str) -> list[str]:
    """single, dual and one `donor-<lang>` per other language of the task (names: `cltm.paths`)."""
    return conditions_of(target, task_languages(config, task))


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
                 if k not in ("languages", "seeds", "needs_plant")  # which seeds and languages run, and when
                 # the task is switched on, are not how a run is made
                 and not (k == "training" and config["tasks"][task].get("mode") == "probe")},
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


def merge(base: dict, update: dict) -> dict:
    """Snakemake's merge of config files: mappings merge key by key; anything else (lists, null) replaces."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def selection_config(config: dict, lang: str | None = None) -> dict:
    """The part of the config that selection reads: training hyper-parameters left out, so editing them
    does not redo selection or audio preparation. With `lang`, only what that language's selection
    reads (adding another language to the matrix then leaves its audio preparation alone). A task's
    `mode` and `probe` head settings are training settings too."""
    # with resample per_seed (data.resample or the task's own) every run seed draws its own training subsets:
    # the seeds are selection's
    per_seed = {t for t in config["tasks"] if task_resample(config, t) == "per_seed"}
    tasks = {t: {k: v for k, v in c.items() if k not in ("training", "mode", "probe", "seeds")}
             for t, c in config["tasks"].items() if not c.get("subsets_from")}  # a twin reuses another's
    for t in per_seed & set(tasks):
        tasks[t]["seeds"] = draw_seeds(config, t)
    if lang is None:
        return {"languages": all_languages(config), "data": config["data"], "tasks": tasks}
    tasks = {t: {k: v for k, v in c.items() if k != "languages"} for t, c in tasks.items()
             if lang in task_languages(config, t)}
    return {"languages": [lang], "data": config["data"], "tasks": tasks}


def analysis_settings(config: dict) -> dict:
    """The config's `analysis` section with its defaults (`cltm.defaults.ANALYSIS`) filled in (every key is optional)."""
    given = config.get("analysis") or {}
    out = {}
    for key, default in ANALYSIS.items():
        value = given.get(key, default)
        out[key] = {**default, **value} if isinstance(default, dict) and key != "languages_info" else value
    return out


def plant_settings(config: dict) -> dict | None:
    """`corpus.demo.plant` when the corpus is the demo and a plant is configured (the known answer,
    docs/statistics.md), else None."""
    corpus = config.get("corpus") or {}
    if corpus.get("type") != "demo":
        return None
    plant = (corpus.get("demo") or {}).get("plant")
    return plant if isinstance(plant, dict) else None


def task_label_column(config: dict, task: str) -> str | None:
    """The corpus column a classification task's labels come from (as `cltm.tasks.classification` reads it):
    its `label_column`, else that of the task named in its `subsets_from` (a probe twin reads its twin's
    column), else the task's name (`gender` for gender). None for speaker verification."""
    tasks = config.get("tasks") or {}
    cfg = tasks.get(task) or {}
    base = cfg.get("subsets_from") or task
    twin = tasks.get(base) or {}
    if (cfg.get("kind") or twin.get("kind") or DEFAULT_KIND.get(base)) == "speaker_verification":
        return None
    return cfg.get("label_column") or twin.get("label_column") or base


def planted_tasks(config: dict) -> list[str]:
    """The enabled tasks whose labels are the plant's (`label_column` equal to corpus.demo.plant's: the
    planted task and its probe twin), whose matrices are read against the known answer. None without a plant."""
    plant = plant_settings(config)
    if plant is None:
        return []
    column = plant.get("label_column", "accents")  # the default of cltm.demo.plant.PlantSpec
    return [t for t in enabled_tasks(config) if task_label_column(config, t) == column]


def task_size(config: dict, task: str) -> int:
    """N of a task: clips per class (gender) or utterances (speaker)."""
    cfg = config["tasks"][task]
    return int(cfg["n_per_class"] if "n_per_class" in cfg else cfg["n_utterances"])


def ladder_sizes(config: dict, task: str) -> list[int]:
    """The learning curve's rungs n = round(factor * N), distinct, ascending, at least 1."""
    n = task_size(config, task)
    factors = analysis_settings(config)["learning_curve"]["factors"]
    return sorted({max(1, int(round(f * n))) for f in factors})


def matrix_settings(config: dict) -> tuple[dict, list[str]]:
    """({flag_alpha, ci_level}, deprecation messages) of the config's `matrix` section. A `flag_z` (the
    threshold of an earlier version, in normal SEs) is read as the two-sided level of that z, now tested
    with t on the seeds' degrees of freedom, and named in a message."""
    given = dict(config.get("matrix") or {})
    out = {**MATRIX, **{k: given[k] for k in MATRIX if k in given}}
    messages = []
    if "flag_z" in given:
        z = float(given["flag_z"])
        out["flag_alpha"] = 2 * _normal_sf(z)
        messages.append(
            f"config key 'matrix.flag_z' is deprecated: rows are now flagged with a t test on the seeds' degrees of "
            f"freedom at matrix.flag_alpha; flag_z: {z:g} is read as flag_alpha: {out['flag_alpha']:.4g} (its two-sided "
            "normal level). Write matrix.flag_alpha instead (0.05 by default) and remove flag_z")
    return out, messages


def _normal_sf(z: float) -> float:
    """P(N(0, 1) > z), from the standard library (this module stays free of scipy)."""
    return 0.5 * math.erfc(z / math.sqrt(2))
