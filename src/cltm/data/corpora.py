"""Corpora become one manifest per language: utt_id, path, speaker, gender, language, duration, split.

Two readers: a Common Voice release (per-locale folder with TSVs and clips/) and a generic CSV/TSV manifest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cltm.errors import CltmError
from cltm.tasks.labels import normalise_gender

MANIFEST_COLUMNS = ["utt_id", "path", "speaker", "gender", "language", "duration", "split"]

CV_SPLITS = ("train", "dev", "test")

# Split names of other corpora's manifests (MLS and FLEURS say dev, Hugging Face datasets say validation).
SPLIT_MAP = {"train": "train", "dev": "dev", "validation": "dev", "valid": "dev", "test": "test"}


class CorpusError(CltmError):
    """A corpus that cannot be read as configured; the message names the file and what to do."""


def _read_tsv(path: Path) -> pd.DataFrame:
    # Common Voice TSVs contain quotes inside sentences: disable quoting so rows never merge.
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3, on_bad_lines="error")


def _label_columns(df: pd.DataFrame, columns: dict | None, source, found=None) -> dict:
    """The extra label columns tasks read ({column: [task, ...]}), as raw strings; a missing one is an
    error naming the task, the column and the file."""
    out = {}
    for col, tasks in (columns or {}).items():
        if col not in df.columns:
            names = ", ".join(f"'{t}'" for t in tasks)
            raise CorpusError(
                f"task {names} needs the label column '{col}' (config key 'tasks.{tasks[0]}.label_column'), but "
                f"{source} has no such column; found {', '.join(found if found is not None else df.columns)}")
        out[col] = df[col].fillna("").astype(str).str.strip().to_numpy()
    return out


def read_common_voice(root: str | Path, lang: str, tsv: str = "validated.tsv", columns: dict | None = None) -> pd.DataFrame:
    """Read `<root>/<lang>/<tsv>` of a Common Voice release; columns are found by header name.
    `columns`: extra label columns the tasks read ({column: [task, ...]}, e.g. {"age": ["age"]})."""
    folder = Path(root) / lang
    table = folder / tsv
    if not folder.is_dir():
        present = sorted(p.name for p in Path(root).iterdir() if p.is_dir()) if Path(root).is_dir() else []
        raise CorpusError(
            f"Common Voice: no folder for language '{lang}' in {root} "
            f"(locales present: {', '.join(present) or 'none'}); check 'languages' and 'corpus.common_voice.root'"
        )
    if not table.is_file():
        raise CorpusError(f"Common Voice: {table} is missing; set 'corpus.common_voice.tsv' to a clip list that exists")
    df = _read_tsv(table)
    missing = [c for c in ("client_id", "path", "gender") if c not in df.columns]
    if missing:
        raise CorpusError(f"Common Voice: {table} lacks column(s) {', '.join(missing)}; found {', '.join(df.columns)}")
    out = pd.DataFrame(
        {
            "utt_id": df["path"].map(lambda p: Path(p).stem),
            "path": df["path"].map(lambda p: str(folder / "clips" / p)),
            "speaker": df["client_id"],
            "gender": normalise_gender(df["gender"]),
            "gender_raw": df["gender"],
            "language": lang,
        }
    )
    extra = _label_columns(df, columns, table)
    out["duration"] = _cv_durations(folder, df["path"])
    out["split"] = _cv_splits(folder, df["path"])
    for col, values in extra.items():
        out[col] = values
    return _finish(out, str(table))


def _cv_durations(folder: Path, clips: pd.Series) -> np.ndarray:
    table = folder / "clip_durations.tsv"
    if not table.is_file():
        return np.full(len(clips), np.nan)
    durations = _read_tsv(table)
    col = next((c for c in durations.columns if c.startswith("duration")), None)
    if col is None or "clip" not in durations.columns:
        return np.full(len(clips), np.nan)
    scale = 1e-3 if "ms" in col else 1.0
    lookup = dict(zip(durations["clip"], pd.to_numeric(durations[col], errors="coerce") * scale))
    return clips.map(lambda c: lookup.get(c, np.nan)).to_numpy(dtype=float)


def _cv_splits(folder: Path, clips: pd.Series) -> pd.Series:
    split_of = {}
    for split in CV_SPLITS:
        table = folder / f"{split}.tsv"
        if table.is_file():
            for clip in _read_tsv(table).get("path", []):
                split_of[clip] = split
    return clips.map(lambda c: split_of.get(c, ""))


def read_manifest(path: str | Path, lang: str, gender_map: dict | None = None, columns: dict | None = None) -> pd.DataFrame:
    """Read a generic manifest (CSV, or TSV by extension) and keep the rows of `lang`.

    Required columns: path, speaker, gender, language; optional: utt_id, duration (seconds), split, and
    any label column a task names (`columns`: {column: [task, ...]}, e.g. {"emotion": ["emotion"]}).
    Relative audio paths are taken relative to the manifest's folder.
    """
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"manifest {path} does not exist; set 'corpus.manifest.path'")
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    missing = [c for c in ("path", "speaker", "gender", "language") if c not in df.columns]
    if missing:
        raise CorpusError(
            f"manifest {path} lacks column(s) {', '.join(missing)}; found {', '.join(df.columns)}. "
            "Required: path, speaker, gender, language; optional: utt_id, duration, split"
        )
    rows = df[df["language"] == lang]
    if rows.empty:
        present = sorted(df["language"].unique())
        raise CorpusError(f"manifest {path} has no rows for language '{lang}' (languages present: {', '.join(present)})")
    audio = rows["path"].map(lambda p: str(p if Path(p).is_absolute() else (path.parent / p)))
    out = pd.DataFrame(
        {
            "utt_id": rows["utt_id"] if "utt_id" in rows else audio.map(lambda p: Path(p).stem),
            "path": audio,
            "speaker": rows["speaker"],
            "gender": normalise_gender(rows["gender"], gender_map),
            "gender_raw": rows["gender"],
            "language": lang,
            "duration": pd.to_numeric(rows["duration"], errors="coerce") if "duration" in rows else np.nan,
            "split": _manifest_splits(rows["split"], path) if "split" in rows else "",
        }
    )
    for col, values in _label_columns(rows, columns, path, found=df.columns).items():
        out[col] = values
    return _finish(out, str(path))


def _manifest_splits(values: pd.Series, source: Path) -> pd.Series:
    raw = values.str.strip().str.lower()
    unknown = sorted(set(raw) - set(SPLIT_MAP) - {""})
    if unknown:
        raise CorpusError(f"manifest {source}: unknown split value(s) {', '.join(unknown)} in column 'split'; "
                          f"use {', '.join(sorted(SPLIT_MAP))} or leave it empty")
    return raw.map(lambda v: SPLIT_MAP.get(v, ""))


def _finish(df: pd.DataFrame, source: str) -> pd.DataFrame:
    df = df.reset_index(drop=True)
    if df.empty:
        raise CorpusError(f"{source} lists no clips; check the file, or leave this language out of 'languages'")
    empty_speaker = df["speaker"].fillna("").str.strip() == ""
    if empty_speaker.any():
        raise CorpusError(f"{source}: {int(empty_speaker.sum())} row(s) have no speaker id (first: {df.loc[empty_speaker, 'path'].iloc[0]})")
    dup = df["utt_id"].duplicated()
    if dup.any():
        raise CorpusError(f"{source}: duplicate utterance id(s), e.g. '{df.loc[dup, 'utt_id'].iloc[0]}'; utt_id must be unique")
    return df.sort_values("utt_id", kind="stable").reset_index(drop=True)


def load_corpus_language(corpus: dict, lang: str, demo_root: str | Path | None = None) -> pd.DataFrame:
    """Read one language's manifest from the configured corpus section."""
    kind = corpus["type"]
    columns = corpus.get("columns")  # the label columns the tasks read, added by the workflow's manifest rule
    if kind == "demo":
        return read_common_voice(demo_root, lang, "validated.tsv", columns)
    if kind == "common_voice":
        section = corpus["common_voice"]
        return read_common_voice(section["root"], lang, section.get("tsv", "validated.tsv"), columns)
    if kind == "manifest":
        return read_manifest(corpus["manifest"]["path"], lang, corpus["manifest"].get("gender_map"), columns)
    raise CorpusError(f"config key 'corpus.type': unknown corpus type '{kind}'")


def read_manifest_table(path: str | Path) -> pd.DataFrame:
    """Read back a per-language manifest written by the workflow (results/manifests/<lang>.tsv)."""
    header = pd.read_csv(path, sep="\t", nrows=0).columns
    return pd.read_csv(path, sep="\t", dtype={c: str for c in header if c != "duration"},
                       keep_default_na=False, na_values={"duration": [""]})


def read_speaker_labels(paths) -> dict[str, pd.DataFrame]:
    """The `results/selection/<lang>.speakers.tsv` files of several languages: {language: table}."""
    return {Path(p).name.removesuffix(".speakers.tsv"): _read_str_table(p) for p in paths}


def read_speaker_index(path, own: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """`results/selection/speakers.tsv` as {language: table}, with the languages in `own` (read from
    their own files, which are current) in place of their rows in the index."""
    index = _read_str_table(path)
    labels = {lang: df.drop(columns="language") for lang, df in index.groupby("language") if lang not in own}
    return {**labels, **own}


def _read_str_table(path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
