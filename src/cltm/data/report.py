"""The per-language data report: what the corpus holds, what was selected, what was dropped and why."""

from __future__ import annotations

import pandas as pd

from cltm.data.audio import DROP_REASONS
from cltm.data.draws import training_clips
from cltm.data.selection import SelectionError
from cltm.data.speakers import checks_columns
from cltm.tasks.labels import GENDERS

SPEAKER_CHECK_COLUMNS = ["language", "speaker", "issue", "clips", "clips_male", "clips_female", "action", "detail"]


def corpus_stats(manifest: pd.DataFrame) -> dict:
    """Speakers, clips and listed hours, in total and per gender (unlabelled = no usable label)."""
    def hours(df):
        known = df["duration"].dropna()
        return round(float(known.sum()) / 3600, 3) if len(known) else None  # unknown without durations

    stats = {"speakers": manifest["speaker"].nunique(), "clips": len(manifest), "hours": hours(manifest)}
    for g in GENDERS + ("",):
        sub = manifest[manifest["gender"] == g]
        name = g or "unlabelled"
        stats.update({f"speakers_{name}": sub["speaker"].nunique(), f"clips_{name}": len(sub),
                      f"hours_{name}": hours(sub)})
    return stats


def language_record(lang: str, manifest: pd.DataFrame, selections: dict, dropped: pd.DataFrame,
                    checked: int, prepared_samples: int, sample_rate: int, speaker_ids: str = "corpus") -> dict:
    """Everything the report needs about one language, written by its audio preparation."""
    checks = next((sel.get("speaker_checks") or {} for sel in selections.values()), {})
    listed = sorted(set(checks.get("mixed_gender_speakers", [])) | set(checks.get("excluded_speakers", [])))
    counts = manifest[manifest["speaker"].isin(listed)].groupby(["speaker", "gender"]).size()
    trained = {manifest_speaker for sel in selections.values()
               for manifest_speaker in manifest.loc[manifest["utt_id"].isin(training_clips(sel)), "speaker"]}
    return {"language": lang, "corpus": corpus_stats(manifest), "selections": selections,
            "speaker_clips": {spk: {g or "unlabelled": int(n) for g, n in counts[spk].items()} for spk in listed},
            "speaker_ids": speaker_ids, "training_speakers": sorted(trained),
            "checked_clips": checked, "prepared_clips": len({u for s in selections.values()
                                                            for u in set(s["test"]) | training_clips(s)}),
            "prepared_hours": round(prepared_samples / sample_rate / 3600, 4),
            "dropped": dropped.to_dict(orient="records")}


def report_tables(records: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per language, one row per dropped clip)."""
    rows, drops = [], []
    for rec in records:
        row = {"language": rec["language"], **rec["corpus"]}
        for task, sel in rec["selections"].items():
            row[f"{task}_test_clips"] = len(sel["test"])
            row[f"{task}_single_clips"] = len(sel["single"])
            row[f"{task}_extra_clips"] = len(sel["extra"])
            if "trials" in sel:
                row[f"{task}_trials"] = len(sel["trials"])
        reasons = pd.Series([d["reason"] for d in rec["dropped"]], dtype=str).value_counts()
        row.update(checked_clips=rec["checked_clips"], prepared_clips=rec["prepared_clips"],
                   prepared_hours=rec["prepared_hours"], dropped=len(rec["dropped"]),
                   **{f"dropped_{r}": int(reasons.get(r, 0)) for r in DROP_REASONS},
                   **checks_columns(rec["selections"]))
        rows.append(row)
        drops += [{"language": rec["language"], **d} for d in rec["dropped"]]
    table = pd.DataFrame(rows)
    drop_table = pd.DataFrame(drops, columns=["language", "utt_id", "path", "speaker", "gender", "reason", "detail"])
    return table, drop_table



def cross_language_leaks(records: list[dict]) -> list[str]:
    """Every (language, test speaker) that another language's final training subsets use.

    Selection prevents this by construction (and re-selection after bad clips keeps to it); this check
    on the final subsets of all languages is the last line before any training starts. It compares
    speaker ids as they are, so it also finds a selection made before a newly added language existed
    (whose test speakers it could not know). With `data.speaker_ids: per_language` ids never cross.
    """
    problems = []
    for rec in records:
        test = {s for sel in rec["selections"].values() for s in sel["test_speakers"]}
        for other in records:
            if other is rec or "corpus" not in (rec.get("speaker_ids", "corpus"), other.get("speaker_ids", "corpus")):
                continue
            both = sorted(test & set(other.get("training_speakers", [])))
            if both:
                problems.append(f"{len(both)} test speaker(s) of '{rec['language']}' are in the training subsets of "
                                f"'{other['language']}' (first: {both[0]}); redo that selection with "
                                f"`snakemake results/selection/{other['language']}.json -f --cores 1` plus your "
                                "--configfile, then run your usual command")
    return problems


def check_no_leaks(records: list[dict]) -> None:
    problems = cross_language_leaks(records)
    if problems:
        raise SelectionError(
            "A speaker would be tested in one language and trained on in another; no training was started. "
            "This happens when a language added to the config shares speakers with a language selected before "
            "it (selections are not redone for a new language, so that existing runs stay valid):\n  - "
            + "\n  - ".join(problems))


def speaker_check_table(records: list[dict]) -> pd.DataFrame:
    """One row per speaker that a corpus-wide rule kept out of a set: conflicting gender labels, or a test
    speaker of another language that this language would otherwise have trained on."""
    tested_in = {}
    for rec in records:
        for s in {s for sel in rec["selections"].values() for s in sel["test_speakers"]}:
            tested_in.setdefault(s, []).append(rec["language"])
    rows = []
    for rec in records:
        checks = next((sel.get("speaker_checks") or {} for sel in rec["selections"].values()), {})
        clips = rec.get("speaker_clips", {})
        for issue, speakers, action in (
                ("mixed_gender", checks.get("mixed_gender_speakers", []),
                 "kept out of the test set and of gender training; speaker-verification training may use it"),
                ("test_speaker_elsewhere", checks.get("excluded_speakers", []), "kept out of every training subset")):
            for spk in speakers:
                n = clips.get(spk, {})
                if issue == "test_speaker_elsewhere":
                    detail = "test speaker of " + ", ".join(sorted(set(tested_in.get(spk, [])) - {rec["language"]}))
                elif n.get("male", 0) and n.get("female", 0):
                    detail = "both labels in this language"
                else:
                    detail = "the other label in another language (data.speaker_ids: corpus)"
                rows.append({"language": rec["language"], "speaker": spk, "issue": issue,
                             "clips": sum(n.values()), "clips_male": n.get("male", 0),
                             "clips_female": n.get("female", 0), "action": action, "detail": detail})
    return pd.DataFrame(rows, columns=SPEAKER_CHECK_COLUMNS)


def data_summary(manifests: dict[str, pd.DataFrame], selections: dict[str, dict[str, dict]]) -> pd.DataFrame:
    """Per language: speakers and clips per gender, hours, and the selected sizes per task."""
    rows = []
    for lang, m in manifests.items():
        row = {"language": lang, "speakers": m["speaker"].nunique(), "clips": len(m),
               "hours": round(float(m["duration"].sum(skipna=True)) / 3600, 3)}
        for g in GENDERS + ("",):
            name = g or "unlabelled"
            sub = m[m["gender"] == g]
            row[f"speakers_{name}"] = sub["speaker"].nunique()
            row[f"clips_{name}"] = len(sub)
        for task, sel in selections.get(lang, {}).items():
            row[f"{task}_test_clips"] = len(sel["test"])
            row[f"{task}_single_clips"] = len(sel["single"])
            row[f"{task}_extra_clips"] = len(sel["extra"])
            if "trials" in sel:
                row[f"{task}_trials"] = len(sel["trials"])
        row.update(checks_columns(selections.get(lang, {})))
        rows.append(row)
    return pd.DataFrame(rows)
