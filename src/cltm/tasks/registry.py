"""The task registry: which kind a configured task is, and its task object.

A task is one object (`make_task(name, cfg)`) that the rest of the tool asks: the manifest columns it
needs, its labels and classes, its selection sizes, its pooling, its metric and how it scores a run's
outputs, its display name. Two kinds cover the field:

- `classification`: utterance classification on any label column of the manifest (gender, age group,
  emotion, accent): `label_column`, the `classes` or a `label_map` from raw values to classes,
  `n_per_class` clips per class, macro-F1 (or accuracy) over all classes (`cltm.tasks.classification`);
- `speaker_verification`: speaker-identification fine-tuning, cosine scoring of trials, ROC-AUC
  (`cltm.tasks.verification`).

`tasks.<name>.kind` picks the kind; `gender` and `speaker` default to their historical kinds, so
existing configs need no change (and their selections, paths and run records stay as they were).
Selecting (`cltm.data.plan`), training and evaluating (`cltm.train`) are done with the task, not by it.
"""

from __future__ import annotations

from cltm.tasks.base import TaskError
from cltm.tasks.classification import ClassificationTask
from cltm.tasks.verification import SpeakerVerificationTask

KINDS = {"classification": ClassificationTask, "speaker_verification": SpeakerVerificationTask}

# the kind a task name implies when `kind` is not given (the two tasks the tool started with)
DEFAULT_KIND = {"gender": "classification", "speaker": "speaker_verification"}

# manifest columns every corpus reader writes; a label column cannot be one of them but `gender`
STANDARD_COLUMNS = ("utt_id", "path", "speaker", "gender", "language", "duration", "split", "gender_raw")


def kind_of(name: str, cfg: dict) -> str:
    """The kind of task `tasks.<name>` (`classification` or `speaker_verification`)."""
    kind = (cfg or {}).get("kind") or DEFAULT_KIND.get(name)
    if kind is None:
        raise TaskError(f"config key 'tasks.{name}.kind' is required for a task not named gender or speaker: "
                        f"one of {', '.join(KINDS)}")
    if kind not in KINDS:
        raise TaskError(f"config key 'tasks.{name}.kind': '{kind}' is not one of {', '.join(KINDS)}")
    return kind


def make_task(name: str, cfg: dict) -> ClassificationTask | SpeakerVerificationTask:
    """The task object of `tasks.<name>` (a config section, read as it is: defaults are applied by the
    object, never written into the config, so that the settings digest of an existing task never changes)."""
    return KINDS[kind_of(name, cfg)](name, cfg)


def configured_tasks(config: dict) -> dict:
    """{name: task object} of every task in `config["tasks"]` that is enabled."""
    return {name: make_task(name, cfg) for name, cfg in (config.get("tasks") or {}).items() if cfg is not None}


def label_columns(config: dict) -> dict[str, list[str]]:
    """The extra manifest columns the configured tasks read: {column: [task, ...]} (gender is standard)."""
    out: dict[str, list[str]] = {}
    for name, task in configured_tasks(config).items():
        for col in task.columns:
            out.setdefault(col, []).append(name)
    return out
