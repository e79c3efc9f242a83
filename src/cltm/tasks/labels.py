"""Gender labels: the two classes the gender task and the test sets use, and how raw labels map to them."""

from __future__ import annotations

import pandas as pd

GENDERS = ("male", "female")

# Common Voice changed its gender vocabulary in v17; both map to the two labels the tasks use.
# Everything else (other, transgender, non-binary, do_not_wish_to_say, intersex, empty) is kept
# in `gender_raw` but gets gender "" and never enters a gender-labelled set.
GENDER_MAP = {
    "male": "male",
    "male_masculine": "male",
    "m": "male",
    "female": "female",
    "female_feminine": "female",
    "f": "female",
}


# Labels that say on purpose that a speaker is neither (or did not say): left out, never "not recognised".
NON_BINARY_LABELS = {"other", "transgender", "non-binary", "non_binary", "do_not_wish_to_say", "intersex",
                     "unknown", "n/a", "na", "none"}


def normalise_gender(values: pd.Series, gender_map: dict | None = None) -> pd.Series:
    """male / female from the raw labels: GENDER_MAP, plus a corpus's own `gender_map` (raw label -> male,
    female, or null to leave the label out); keys are matched case-insensitively."""
    known = {**GENDER_MAP, **{str(k).strip().lower(): (v or "") for k, v in (gender_map or {}).items()}}
    return values.fillna("").astype(str).str.strip().str.lower().map(lambda g: known.get(g, ""))


def unrecognised_genders(manifest: pd.DataFrame) -> str:
    """For an error message: the raw gender labels that mapped to neither male nor female (and do not say
    so on purpose, like Common Voice's `other`), and how to map them; "" when there are none."""
    if "gender_raw" not in manifest:
        return ""
    raw = manifest.loc[~manifest["gender"].isin(GENDERS), "gender_raw"].fillna("").astype(str).str.strip()
    counts = raw[(raw != "") & ~raw.str.lower().isin(NON_BINARY_LABELS)].value_counts()
    if counts.empty:
        return ""
    labels = ", ".join(f"'{label}' ({n} clips)" for label, n in counts.head(10).items())
    example = ", ".join(f"{label}: male|female" for label in counts.index[:2])
    return (f". The gender label(s) {labels} were not recognised (known: male, female, m, f, male_masculine, "
            "female_feminine), so those clips count as unlabelled; map them with the config key "
            f"corpus.manifest.gender_map, e.g. `corpus: {{manifest: {{gender_map: {{{example}}}}}}}`")
