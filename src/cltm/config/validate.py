"""Config validation with messages that name the key (and, for a file, the line): the JSON schema
(package data, `config.schema.yaml` beside this module), the cross-key rules, and the paths a run needs."""

from __future__ import annotations

from pathlib import Path

import json

import yaml
from jsonschema import Draft202012Validator

from cltm.config.settings import (
    DEMO_LANGUAGES,
    all_languages,
    enabled_tasks,
    encoder_source_kind,
    expand_twins,
    merge,
    plant_settings,
    planted_tasks,
    task_languages,
)
from cltm.errors import ConfigError
from cltm.tasks import TaskError, kind_of, make_task

SCHEMA_PATH = Path(__file__).resolve().with_name("config.schema.yaml")
# the default config that Snakemake merges the user's files over (in the checkout, beside the Snakefile)
DEFAULT_CONFIG = Path(__file__).resolve().parents[3] / "config" / "config.yaml"

__all__ = ["ConfigError", "SCHEMA_PATH", "check_files", "check_paths", "load_schema", "pads_exactly_config",
           "validate_config", "whole_clip_problem", "yaml_error_message"]


def load_schema(path: str | Path | None = None) -> dict:
    return yaml.safe_load(Path(path or SCHEMA_PATH).read_text())


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def validate_config(config: dict, schema: dict | None = None) -> dict:
    """Check `config` against the JSON schema and the cross-key rules; raise ConfigError listing every problem."""
    schema = schema or load_schema()
    numbers_from_strings(config, schema)
    problems = _schema_problems(Draft202012Validator(schema), config) + _task_problems(config, schema)
    if not problems and not enabled_tasks(config):
        problems.append("config key 'tasks': every task is disabled (null); keep at least one, e.g. gender")
    if not problems:
        problems += _semantic_problems(config)
    if problems:
        raise ConfigError("Invalid configuration:\n  - " + "\n  - ".join(problems))
    return config


def _number(text: str, types) -> int | float | None:
    """`text` as the integer or number a schema asks for, else None."""
    text = text.strip()
    try:
        value = int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            return None
        return value if "number" in types and value == value else None
    return value if {"integer", "number"} & set(types) else None


def numbers_from_strings(config: dict, schema: dict) -> dict:
    """Integers and numbers written as strings where the schema asks for a number, converted in place.
    Snakemake hands the values inside a list or mapping of `--config` over as strings (`--config 'seeds=[1, 2]'`
    gives ['1', '2']); a string that is not a number is left for validation to name."""
    validators = [(Draft202012Validator(schema), config, ())]
    tasks = config.get("tasks") if isinstance(config, dict) else None
    for name, cfg in (tasks if isinstance(tasks, dict) else {}).items():
        if isinstance(cfg, dict):
            try:
                sub = {**schema["$defs"][f"{kind_of(name, cfg)}_task"], "$defs": schema["$defs"]}
            except TaskError:
                continue
            validators.append((Draft202012Validator(sub), cfg, ()))
    for validator, obj, _ in validators:
        for _ in range(100):  # each pass converts what it finds; a converted value cannot fail the same way
            changed = False
            for err in validator.iter_errors(obj):
                if err.validator != "type" or not isinstance(err.instance, str) or not err.absolute_path:
                    continue
                types = [err.validator_value] if isinstance(err.validator_value, str) else list(err.validator_value)
                value = _number(err.instance, types)
                if value is None:
                    continue
                parent = obj
                for key in list(err.absolute_path)[:-1]:
                    parent = parent[key]
                parent[err.absolute_path[-1]] = value
                changed = True
            if not changed:
                break
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
                make_task(name, cfg)
            except TaskError as err:
                found.append(str(err))
        problems += found
    return problems


def _plant_problems(config: dict) -> list[str]:
    """A task reading the planted label column must have an angle for each of its languages."""
    plant = plant_settings(config)
    if not plant:
        return []
    column = plant.get("label_column", "accents")
    problems = []
    for task in planted_tasks(config):
        if config["tasks"][task].get("subsets_from"):
            continue  # a twin has its twin's languages, checked there
        missing = [lang for lang in task_languages(config, task) if lang not in (plant.get("angles") or {})]
        if missing:
            problems.append(f"config key 'tasks.{task}.languages': {', '.join(missing)} read the planted label column "
                            f"'{column}' but have no angle in 'corpus.demo.plant.angles'; give each an angle "
                            f"(degrees) or leave it out of the task's languages")
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
        for lang in all_languages(config):
            if lang not in DEMO_LANGUAGES:
                problems.append(
                    f"config key 'languages': the synthetic demo corpus has no language '{lang}'; "
                    f"it supports {', '.join(sorted(DEMO_LANGUAGES))}"
                )
        problems += _plant_problems(config)
    enc = config["encoder"]
    if enc["source"] == "random" and not enc.get("config"):
        problems.append("config key 'encoder.config' must give the model's sizes (HubertConfig keys, or another family's with "
                        "model_type) when encoder.source is 'random'")
    elif enc["source"] == "random":
        problems += _whole_clip_problems(config, {**enc["config"], **(enc.get("overrides") or {})})
    for task in enabled_tasks(config):
        for lang in task_languages(config, task):
            if lang not in config["languages"] and not (config["tasks"][task] or {}).get("needs_plant"):
                problems.append(f"config key 'tasks.{task}.languages': '{lang}' is not in 'languages'")
    test = config["data"]["test"]
    if test["max_clips_per_speaker"] < test["min_clips_per_speaker"]:
        problems.append("config key 'data.test.max_clips_per_speaker' is smaller than 'data.test.min_clips_per_speaker'")
    return problems


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
            missing = [lang for lang in all_languages(config) if not (root / lang).is_dir()]
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
    elif kind == "local":
        try:
            model_config = json.loads((Path(where) / "config.json").read_text())
        except (OSError, ValueError):
            model_config = None  # unreadable: the encoder job says why; the run start checks the batches
        if isinstance(model_config, dict):
            problems += _whole_clip_problems(config, {**model_config, **(config["encoder"].get("overrides") or {})})
    if problems:
        raise ConfigError("Invalid configuration:\n  - " + "\n  - ".join(problems))


def pads_exactly_config(model_config: dict) -> bool:
    """Whether an encoder of this config.json (transformers' keys; absent keys take the family's defaults)
    gives a padded clip, with an attention mask, the outputs of the clip alone: the rule of
    `cltm.model.encoder.pads_exactly`, read without torch. A group-normalised feature encoder (HuBERT base,
    mHuBERT-147, wav2vec 2.0 base: `feat_extract_norm` "group", every family's default) does not."""
    if model_config.get("model_type") == "data2vec-audio":
        return model_config.get("num_conv_pos_embeddings", 5) == 1  # its positional convolutions see padded frames
    return model_config.get("feat_extract_norm", "group") == "layer"


def whole_clip_problem(training: dict, padded_batches: bool, task: str = "<task>") -> str | None:
    """Why a task's `training` section would cut clips, or None: `batch_size` > 1 with `crop_seconds: null`
    (whole utterances) for an encoder that takes no attention mask, whose batches can only hold clips of
    one length, so that every clip of a batch would be cut to the batch's shortest (about 40-50 % of Common
    Voice's training audio thrown away). Checked at validation where the encoder's config is known
    (`encoder.source: random`, or a local directory) and again when a run starts (`cltm.train.loop.fine_tune`)."""
    if padded_batches or training.get("crop_seconds") or int(training.get("batch_size") or 1) <= 1:
        return None
    return (f"config keys 'tasks.{task}.training.batch_size' ({training['batch_size']}) and "
            f"'tasks.{task}.training.crop_seconds' (null: whole utterances): this encoder's feature encoder is "
            "group-normalised and takes no attention mask, so a batch can only hold clips of one length and every "
            "clip would be cut to the shortest of its batch, throwing audio away; set "
            f"tasks.{task}.training.batch_size: 1 to train on whole clips (the paper protocol), or set "
            f"tasks.{task}.training.crop_seconds (e.g. 4.0) to train on random crops of that length")


def _whole_clip_problems(config: dict, model_config: dict) -> list[str]:
    padded = pads_exactly_config(model_config)
    tasks = config.get("tasks") or {}
    return [problem for task in enabled_tasks(config)
            if isinstance(tasks.get(task), dict) and tasks[task].get("mode", "finetune") != "probe"
            for problem in [whole_clip_problem(tasks[task].get("training") or {}, padded, task)] if problem]


def check_files(paths) -> dict:
    """Parse config files as Snakemake would merge them over config/config.yaml; raise ConfigError naming the
    file, line and column of a YAML syntax error, or the key of an invalid value."""
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    for path in paths:
        try:
            update = yaml.safe_load(Path(path).read_text())
        except OSError as err:
            raise ConfigError(f"config file {path}: {err.strerror}") from None
        except yaml.YAMLError as err:
            raise ConfigError(yaml_error_message(path, err)) from None
        if not isinstance(update, dict):
            raise ConfigError(f"config file {path} must hold keys at the top level (it holds {type(update).__name__})")
        merge(config, update)
    expand_twins(config)  # as the workflow does: a probe twin takes its fine-tuning task's keys first
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
