"""The common part of every task: its name, its config section, what it displays and which metric it reports."""

from __future__ import annotations

import pandas as pd

from cltm.defaults import RUNTIME_MINUTES
from cltm.errors import ConfigError


class TaskError(ConfigError):
    """A task configured in a way the tool cannot run; the message names the key."""


DISPLAY_NAMES = {"gender": "Gender identification", "speaker": "Speaker verification", "age": "Age group"}


def label_strings(values: pd.Series) -> pd.Series:
    """Label values as stripped strings ("" where missing)."""
    return values.fillna("").astype(str).str.strip()


class Task:
    """A configured task (`tasks.<name>`): what the rest of the tool asks about it. It reads its config
    section as it is (defaults are applied here, never written into the config, so that the settings digest
    of an existing task never changes); it selects, trains and evaluates nothing itself."""

    kind = ""
    default_metric = ""
    pooling = "last"
    columns: tuple[str, ...] = ()

    def __init__(self, name: str, cfg: dict):
        self.name, self.cfg = name, dict(cfg or {})

    @property
    def display_name(self) -> str:
        return self.cfg.get("display_name") or DISPLAY_NAMES.get(self.name) or self.name.replace("_", " ").capitalize()

    @property
    def metric(self) -> str:
        return self.cfg.get("metric") or self.default_metric

    @property
    def mode(self) -> str:
        """`finetune` (the encoder is trained) or `probe` (a head on frozen features: cltm.train.probe)."""
        return self.cfg.get("mode") or "finetune"

    @property
    def runtime_minutes(self) -> int:
        return RUNTIME_MINUTES[self.kind]

    def key(self, suffix: str) -> str:
        return f"tasks.{self.name}.{suffix}"
