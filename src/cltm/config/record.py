"""The record of the config files a results/ folder was made with (`results/.cltm/config_files.json`), so
that a command that forgets the experiment's --configfile (e.g. rerunning one cell with -f) stops before
it rebuilds the corpus, the selections and the cell under the demo's config."""

from __future__ import annotations

import json
import os
from pathlib import Path

from cltm.config.settings import digest, run_settings
from cltm.errors import ConfigError
from cltm.io import write_json
from cltm.paths import CONFIG_RECORD, SETTINGS


def relative_files(configfiles, cwd: str | Path) -> list[str]:
    """The config files, relative to the working directory where they lie inside it (so that a results
    folder copied or moved with its config files keeps its record)."""
    here = Path(cwd).resolve()
    out = []
    for f in configfiles:
        path = Path(f).resolve()
        out.append(str(path.relative_to(here)) if path.is_relative_to(here) else str(path))
    return out


def check_same_config_files(configfiles, cwd: str | Path = ".") -> None:
    """Stop (ConfigError) when `configfiles` differ from those results/ was made with, unless
    CLTM_NEW_CONFIG=1. A results/ without a record is not checked."""
    record = Path(cwd) / CONFIG_RECORD
    try:
        before = json.loads(record.read_text())["configfiles"]
    except (OSError, ValueError, KeyError):
        return
    now = relative_files(configfiles, cwd)
    if before != now and os.environ.get("CLTM_NEW_CONFIG") != "1":
        given = [f for f in before if Path(f).name != "config.yaml" or Path(f).parent.name != "config"]
        raise ConfigError(
            f"results/ was made with the config file(s) {', '.join(before)}; this command reads "
            f"{', '.join(now)}. Pass the same files again"
            + (f" (--configfile {' '.join(given)})" if given else "")
            + ". To go on in this results/ folder with other config files on purpose, set CLTM_NEW_CONFIG=1 "
            f"once (it updates {CONFIG_RECORD}); to start another experiment, use another working directory "
            "(snakemake --directory DIR).")


def check_and_record_config_files(configfiles, cwd: str | Path = ".") -> None:
    """At the start of a run (onstart): stop on other config files, else record these."""
    check_same_config_files(configfiles, cwd)
    write_json(Path(cwd) / CONFIG_RECORD, {"configfiles": relative_files(configfiles, cwd)})


def settings_changes(config: dict, tasks, cwd: str | Path = ".") -> list[str]:
    """A warning per task whose existing runs were made under other settings (its results/<task>/settings.json
    holds another digest): the usual cause is a command without the experiment's --configfile (e.g.
    rerunning one cell with -f), which would otherwise quietly rerun that cell under the demo's settings."""
    out = []
    for task in tasks:
        path = Path(cwd) / SETTINGS.format(task=task)
        try:
            before = json.loads(path.read_text())["digest"]
        except (OSError, ValueError, KeyError):
            continue
        now = digest(run_settings(config, task))
        if before != now:
            out.append(f"cltm: the settings of task '{task}' differ from those its runs were made with "
                       f"({SETTINGS.format(task=task)}: {before}, this config: {now}); every {task} run this "
                       "command plans uses the new settings. If you meant to work on the existing experiment, "
                       "pass the same --configfile as before.")
    return out
