"""Audio preparation: only selected clips are decoded, once, to mono 16 kHz; every clip is checked when it
is first decoded (missing, empty, undecodable, truncated, too short, silent), and a bad clip is logged
and replaced deterministically (`prepare_selection`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cltm.data.audio import AudioError, check_clip, to_pcm, write_store
from cltm.data.corpora import CorpusError
from cltm.data.plan import select_language, selected_clips
from cltm.data.selection import SelectionError
from cltm.data.speakers import SpeakerRules
from cltm.defaults import CLIP_CHECKS

# Beyond this many bad clips, and more than half of those checked, the corpus itself is wrong
# (wrong clips folder, unmounted disk): stop with one message instead of replacing clip after clip.
GIVE_UP_AFTER = 20


def prepare_language(manifest: pd.DataFrame, utt_ids, out_npy: str | Path, out_index: str | Path,
                     sample_rate: int = 16000, log=print, checks: dict | None = None) -> pd.DataFrame:
    """Decode exactly the clips `utt_ids` into one int16 array and its index; a bad clip is an AudioError.

    The workflow uses `prepare_selection`, which replaces bad clips instead.
    """
    checks = {**CLIP_CHECKS, **(checks or {})}
    meta = manifest.set_index("utt_id")
    pcm = {}
    for i, utt in enumerate(sorted(set(utt_ids)), 1):
        wave, reason, detail = check_clip(meta.at[utt, "path"], sample_rate,
                                          listed_seconds=_listed(meta, utt), **checks)
        if wave is None:
            raise AudioError(f"audio file {meta.at[utt, 'path']} (utterance {utt}): {reason}, {detail}")
        pcm[utt] = to_pcm(wave)
        if i % 200 == 0:
            log(f"decoded {i} clips")
    return write_store(pcm, meta, out_npy, out_index)


def _listed(meta: pd.DataFrame, utt: str) -> float:
    value = meta.at[utt, "duration"] if "duration" in meta.columns else float("nan")
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


@dataclass
class PreparedLanguage:
    """The outcome of `prepare_selection`: final selections, their audio, and every dropped clip."""

    selections: dict[str, dict]
    pcm: dict[str, np.ndarray]
    dropped: pd.DataFrame  # utt_id, path, speaker, gender, reason, detail (in the order found)
    checked: int  # clips decoded and checked, good or bad


def prepare_selection(config: dict, manifest: pd.DataFrame, lang: str, planned: dict[str, dict], *,
                      sample_rate: int = 16000, log=print) -> PreparedLanguage:
    """Decode the planned selection of one language; replace every bad clip deterministically.

    Each clip is decoded and checked when it is first needed. A bad clip is logged with its path and
    reason and removed from the language's pool, and the selection is made again on the remaining
    clips. Selection orders clips and speakers by a keyed hash (`cltm.data.selection.keyed_order`), so the
    new selection takes the next clip of the same speaker (or, when a speaker runs short, the next
    speaker) and leaves the rest unchanged. It keeps every rule of the original one: sizes, gender
    balance, caps per speaker, speaker-disjoint test set, nested subsets, and the corpus-wide speaker
    rules the plan was made under (`SpeakerRules.from_selection`): test speakers of other languages stay
    out of training, mixed-gender speakers out of gender sets, and a new test speaker is never one that
    another language may train on. Newly selected clips are checked in turn, until the selection holds
    only good clips. A language that can no longer supply the config's sizes raises SelectionError with
    the drop counts.
    """
    checks = {**CLIP_CHECKS, **(config["data"].get("clip_checks") or {})}
    meta = manifest.set_index("utt_id")
    pcm, dropped, selections = {}, [], planned
    rules = SpeakerRules.from_selection(next(iter(planned.values())), planned) if planned else None
    bad: set[str] = set()
    while True:
        needed = sorted(selected_clips(selections) - pcm.keys())
        if not needed:
            break
        found_bad = False
        for utt in needed:
            wave, reason, detail = check_clip(meta.at[utt, "path"], sample_rate,
                                              listed_seconds=_listed(meta, utt), **checks)
            if wave is not None:
                pcm[utt] = to_pcm(wave)
                continue
            found_bad = True
            bad.add(utt)
            dropped.append({"utt_id": utt, "path": meta.at[utt, "path"], "speaker": meta.at[utt, "speaker"],
                            "gender": meta.at[utt, "gender"], "reason": reason, "detail": detail})
            log(f"{lang}: dropped {meta.at[utt, 'path']}: {reason} ({detail}); replacing it from the pool")
            checked = len(pcm) + len(bad)
            if len(bad) >= GIVE_UP_AFTER and len(bad) > checked / 2:
                raise CorpusError(
                    f"language '{lang}': {len(bad)} of the {checked} clips checked so far are bad "
                    f"({_counts(dropped)}; first: {dropped[0]['path']}: {dropped[0]['detail']}). The corpus "
                    "itself looks wrong: check that the clip paths exist and decode (corpus.common_voice.root "
                    "or the manifest's path column)"
                )
        log(f"{lang}: {len(pcm)} clips good, {len(bad)} dropped so far")
        if found_bad:
            try:
                selections = select_language(config, manifest[~manifest["utt_id"].isin(bad)], lang, rules)
            except SelectionError as err:
                raise SelectionError(
                    f"language '{lang}': after dropping {len(bad)} bad clip(s) ({_counts(dropped)}; each is "
                    f"logged with its path) it cannot supply what the config asks: {err}"
                ) from None
    final = selected_clips(selections)
    dropped = pd.DataFrame(dropped, columns=["utt_id", "path", "speaker", "gender", "reason", "detail"])
    return PreparedLanguage(selections, {u: pcm[u] for u in final}, dropped, len(pcm) + len(bad))


def _counts(dropped: list[dict]) -> str:
    counts = pd.Series([d["reason"] for d in dropped]).value_counts()
    return ", ".join(f"{n} {reason}" for reason, n in counts.items())
