"""The per-language data report: what the corpus holds, what was selected, what was dropped and why."""

from __future__ import annotations

import pandas as pd

from cltm.audio import DROP_REASONS
from cltm.sampling import GENDERS


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
                    checked: int, prepared_samples: int, sample_rate: int) -> dict:
    """Everything the report needs about one language, written by its audio preparation."""
    return {"language": lang, "corpus": corpus_stats(manifest), "selections": selections,
            "checked_clips": checked, "prepared_clips": len({u for s in selections.values()
                                                            for u in s["test"] + s["single"] + s["extra"]}),
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
                   **{f"dropped_{r}": int(reasons.get(r, 0)) for r in DROP_REASONS})
        rows.append(row)
        drops += [{"language": rec["language"], **d} for d in rec["dropped"]]
    table = pd.DataFrame(rows)
    drop_table = pd.DataFrame(drops, columns=["language", "utt_id", "path", "speaker", "gender", "reason", "detail"])
    return table, drop_table

