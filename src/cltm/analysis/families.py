"""Languages of a matrix: name, family and genus, and URIEL typological distances, offline.

Two data files ship in `cltm/analysis/tables/` and are read at run time (no network, no extra package):

- `languages.tsv`: one row per locale code (every Common Voice locale listed in `LOCALES` below,
  the demo's included): `code, iso639_3, glottocode, name, family, genus, lineage`.
- `uriel_distances.tsv`: one row per unordered pair of those ISO 639-3 codes and URIEL distance
  type (`DISTANCE_TYPES`), the distance or empty where URIEL+ cannot compute it, with the reason.

Both are built by `python -m cltm.analysis.families --build` from the `urielplus` package (1.3.2, pip,
CC-BY-SA-4.0; its families and lineages come from Glottolog, CC-BY-4.0), installed at development
time only. The two files are derived data under CC-BY-SA-4.0 (see `cltm/analysis/tables/README.md`).

Family = the first level of the Glottolog lineage (an isolate is its own family). Genus = the first
lineage level that is a conventional genus (`GENERA`, e.g. Germanic, Romance, Slavic, Turkic's
Oghuz/Kipchak branches are kept as "Turkic"), else the second level, else the family.
A user overrides any code's family, genus or name in config (`languages_info`).
"""

from __future__ import annotations

import argparse
import itertools
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from cltm.config import analysis_settings, task_languages

__all__ = ["DISTANCE_TYPES", "language_table", "distance_table", "language_distances", "family_order", "task_info",
           "task_families", "task_labels"]

DISTANCE_TYPES = ("genetic", "geographic", "syntactic", "phonological", "inventory", "featural")
TABLES = "tables"  # beside this module: package data
LANGUAGES_FILE = "languages.tsv"
DISTANCES_FILE = "uriel_distances.tsv"

# Common Voice locale -> ISO 639-3 candidates (the first one URIEL+ knows is used). Macrolanguages
# map to the variety Common Voice records: ar -> Standard Arabic, zh-CN/zh-TW -> Mandarin (so the
# two get distance 0 to each other: URIEL has one entry for both), zh-HK -> Cantonese.
LOCALES = {
    "ab": ["abk"], "ady": ["ady"], "af": ["afr"], "am": ["amh"], "an": ["arg"], "ar": ["arb", "ara"],
    "as": ["asm"], "ast": ["ast"], "az": ["azj", "aze"], "ba": ["bak"], "bas": ["bas"], "be": ["bel"],
    "bg": ["bul"], "bn": ["ben"], "br": ["bre"], "bxr": ["bxr", "bua"], "ca": ["cat"], "ckb": ["ckb"],
    "cnh": ["cnh"], "cs": ["ces"], "cv": ["chv"], "cy": ["cym"], "da": ["dan"], "dav": ["dav"],
    "de": ["deu"], "dv": ["div"], "dyu": ["dyu"], "el": ["ell"], "en": ["eng"], "eo": ["epo"],
    "es": ["spa"], "et": ["ekk", "est"], "eu": ["eus"], "fa": ["pes", "fas"], "fi": ["fin"],
    "fr": ["fra"], "fy-NL": ["fry"], "ga-IE": ["gle"], "gl": ["glg"], "gn": ["gug", "grn"],
    "ha": ["hau"], "he": ["heb"], "hi": ["hin"], "hsb": ["hsb"], "ht": ["hat"], "hu": ["hun"],
    "hy-AM": ["hye"], "ia": ["ina"], "id": ["ind"], "ig": ["ibo"], "is": ["isl"], "it": ["ita"],
    "ja": ["jpn"], "ka": ["kat"], "kab": ["kab"], "kk": ["kaz"], "kln": ["kln"], "kmr": ["kmr"],
    "ko": ["kor"], "ky": ["kir"], "lg": ["lug"], "lij": ["lij"], "lo": ["lao"], "lt": ["lit"],
    "ltg": ["ltg"], "luo": ["luo"], "lv": ["lvs", "lav"], "mdf": ["mdf"], "mhr": ["mhr"],
    "mk": ["mkd"], "ml": ["mal"], "mn": ["khk", "mon"], "mr": ["mar"], "mrj": ["mrj"], "mt": ["mlt"],
    "myv": ["myv"], "nan-tw": ["nan"], "ne-NP": ["npi", "nep"], "nhi": ["nhi"], "nl": ["nld"],
    "nn-NO": ["nno"], "nso": ["nso"], "oc": ["oci"], "or": ["ory", "ori"], "os": ["oss"],
    "pa-IN": ["pan"], "pl": ["pol"], "ps": ["pbu", "pus"], "pt": ["por"], "quy": ["quy"],
    "rm-sursilv": ["roh"], "rm-vallader": ["roh"], "ro": ["ron"], "ru": ["rus"], "rw": ["kin"],
    "sah": ["sah"], "sat": ["sat"], "sc": ["src", "srd"], "sk": ["slk"], "skr": ["skr"], "sl": ["slv"],
    "sq": ["als", "sqi"], "sr": ["srp"], "sv-SE": ["swe"], "sw": ["swh", "swa"], "ta": ["tam"],
    "te": ["tel"], "th": ["tha"], "ti": ["tir"], "tig": ["tig"], "tk": ["tuk"], "tok": ["tok"],
    "tr": ["tur"], "tt": ["tat"], "tw": ["twi", "aka"], "ug": ["uig"], "uk": ["ukr"], "ur": ["urd"],
    "uz": ["uzn", "uzb"], "vi": ["vie"], "vot": ["vot"], "yi": ["ydd", "yid"], "yo": ["yor"],
    "yue": ["yue"], "zgh": ["zgh"], "zh-CN": ["cmn"], "zh-HK": ["yue"], "zh-TW": ["cmn"], "zu": ["zul"],
    "zza": ["diq", "zza"],
}

# lineage levels accepted as a genus (WALS-style groupings), checked from the root down
GENERA = {
    "Germanic", "Romance", "Slavic", "Baltic", "Celtic", "Iranian", "Indo-Aryan", "Greek", "Albanian",
    "Armenian", "Semitic", "Berber", "Cushitic", "Chadic", "Finnic", "Saami", "Mordvinic", "Mari",
    "Permian", "Ugric", "Samoyedic", "Sinitic", "Turkic", "Mongolic", "Bantu", "Kartvelian", "Dravidian",
    "Tai", "Viet-Muong", "Munda", "Japonic", "Koreanic", "Nilotic", "Tungusic", "Quechuan", "Tupi-Guarani",
}


# ------------------------------------------------------------------ reading the shipped tables


def _read(name: str) -> pd.DataFrame:
    with resources.files("cltm.analysis").joinpath(TABLES, name).open() as fh:
        return pd.read_csv(fh, sep="\t", dtype=str, keep_default_na=False)


def language_table(languages, overrides: dict | None = None) -> pd.DataFrame:
    """Name, ISO 639-3 code, family and genus of each language code, in the order given.

    `overrides` ({code: {name?, family?, genus?, iso639_3?}}, config key `languages_info`) wins over the
    shipped table; a code in neither gets family and genus "unknown" and its code as name.
    Index `code`; columns iso639_3, name, family, genus, source (shipped | config | unknown).
    """
    shipped = _read(LANGUAGES_FILE).set_index("code")
    overrides = overrides or {}
    rows = []
    for code in map(str, languages):
        if code in shipped.index:
            r = shipped.loc[code]
            row = {"code": code, "iso639_3": r["iso639_3"], "name": r["name"], "family": r["family"],
                   "genus": r["genus"], "source": "shipped"}
        else:
            row = {"code": code, "iso639_3": "", "name": code, "family": "unknown", "genus": "unknown",
                   "source": "unknown"}
        extra = overrides.get(code) or {}
        for key in ("iso639_3", "name", "family", "genus"):
            if extra.get(key):
                row[key] = str(extra[key])
                row["source"] = "config"
        if row["genus"] in ("", "unknown") and row["family"] != "unknown":
            row["genus"] = row["family"]
        rows.append(row)
    return pd.DataFrame(rows).set_index("code")


def distance_table() -> pd.DataFrame:
    """The shipped URIEL+ distances: columns lang_a, lang_b (ISO 639-3, a < b), type, distance, note."""
    df = _read(DISTANCES_FILE)
    df["distance"] = pd.to_numeric(df["distance"], errors="coerce")
    return df


def language_distances(info: pd.DataFrame, kind: str, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Square distance matrix of type `kind` between the languages of `info` (from `language_table`).

    NaN where URIEL+ has no distance (a language lacks the features, or has no ISO code). Two codes
    with the same ISO 639-3 code (zh-CN, zh-TW) get distance 0. Index and columns are the codes.
    """
    if kind not in DISTANCE_TYPES:
        raise ValueError(f"unknown distance type {kind!r}; use one of {DISTANCE_TYPES}")
    table = distance_table() if table is None else table
    sub = table[table["type"] == kind]
    lookup = {(a, b): d for a, b, d in zip(sub["lang_a"], sub["lang_b"], sub["distance"])}
    codes = list(info.index)
    out = pd.DataFrame(np.nan, index=codes, columns=codes)
    for x, y in itertools.product(codes, codes):
        ix, iy = info.loc[x, "iso639_3"], info.loc[y, "iso639_3"]
        if x == y:
            out.loc[x, y] = 0.0
        elif ix and iy and ix == iy:
            out.loc[x, y] = 0.0
        elif ix and iy:
            out.loc[x, y] = lookup.get((min(ix, iy), max(ix, iy)), np.nan)
    return out


def family_order(info: pd.DataFrame, languages) -> list[str]:
    """`languages` grouped by family (families in order of first appearance, unknown last), each family's
    languages by genus, in the order given within a genus: the order of a family-ordered heatmap."""
    languages = [str(x) for x in languages]
    fam_rank = {f: i for i, f in enumerate(dict.fromkeys(info.loc[languages, "family"]))}
    gen_rank = {g: i for i, g in enumerate(dict.fromkeys(info.loc[languages, "genus"]))}
    pos = {lang: i for i, lang in enumerate(languages)}

    def key(lang):
        fam = info.loc[lang, "family"]
        return (fam == "unknown", fam_rank[fam], gen_rank[info.loc[lang, "genus"]], pos[lang])

    return sorted(languages, key=key)


# ------------------------------------------------------------------ building the tables (dev time)


def task_info(config: dict, task: str) -> list[dict]:
    """Code, name, family and genus of a task's languages (config `analysis.languages_info` wins)."""
    table = language_table(task_languages(config, task), analysis_settings(config)["languages_info"])
    return table.reset_index().to_dict(orient="records")


def task_families(config: dict, task: str) -> dict:
    return {r["code"]: r["family"] for r in task_info(config, task)}


def task_labels(config: dict, task: str) -> dict:
    """Axis labels "Name (code)" when `analysis.language_names` is true, else none (the codes are shown)."""
    if not analysis_settings(config)["language_names"]:
        return {}
    return {r["code"]: f"{r['name']} ({r['code']})" for r in task_info(config, task)}


def _genus(lineage: list[str], family: str) -> str:
    for level in lineage:
        if level in GENERA:
            return level
        if level.startswith(("Common Turkic", "Oghuz", "Kipchak")):
            return "Turkic"
    rest = [lvl for lvl in lineage[1:] if not lvl.startswith("Classical ")]
    return rest[0] if rest else family


FEATURE_PREFIX = {"syntactic": "S_", "phonological": "P_", "inventory": "INV_"}


def _uriel_vectors(u, kind):  # pragma: no cover - needs urielplus
    """Per language and feature of `kind`: has a value, and the value aggregated over sources as
    urielplus's new_distance does (one source: as is; geographic: mean; otherwise its aggregation,
    U = max, A = mean, of the known values). Vectorised: urielplus's own pairwise loop is far too slow
    for all pairs of 130 locales."""
    idx = u.map_new_distance_to_loaded_features(kind)
    data = np.asarray(u.data[idx], dtype=float)
    feats = np.asarray(u.feats[idx]).astype(str)
    prefix = FEATURE_PREFIX.get(kind)
    keep = np.char.startswith(feats, prefix) if prefix else np.ones(len(feats), dtype=bool)
    data = data[:, keep, :]
    has = ~np.all(data == -1.0, axis=2)
    known = (data != -1.0) & np.isfinite(data)
    if data.shape[2] == 1:
        agg = data[:, :, 0]
    else:
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            masked = np.where(known, data, np.nan)
            agg = np.nanmax(masked, axis=2) if (kind != "geographic" and u.aggregation == "U") else np.nanmean(masked, axis=2)
        agg = np.where(np.isnan(agg), -1.0, agg)
    return has, agg


def _uriel_distance(has, agg, a: int, b: int):  # pragma: no cover - needs urielplus
    """urielplus's angular distance (rounded to 4 places) on the features both languages have; None if none."""
    shared = has[a] & has[b]
    if not shared.any():
        return None
    x, y = agg[a, shared], agg[b, shared]
    x = x if np.linalg.norm(x) else np.full(x.shape, 1e-10)
    y = y if np.linalg.norm(y) else np.full(y.shape, 1e-10)
    cos = float(np.clip(np.dot(x / np.linalg.norm(x), y / np.linalg.norm(y)), -1.0, 1.0))
    return round(2 * np.arccos(cos) / np.pi, 4)


def build(out_dir: Path) -> None:  # pragma: no cover - needs urielplus, run by hand (cltm/analysis/tables/README.md)
    import logging

    from urielplus import urielplus

    logging.disable(logging.INFO)  # urielplus logs every distance
    base = Path(urielplus.__file__).parent / "database" / "urielplus_csvs"
    glotto = pd.read_csv(base / "uriel_glottocode_map.csv").drop_duplicates("iso_code").set_index("iso_code")
    lineage = pd.read_csv(base / "lang_fam_geo.csv").drop_duplicates("language_id").set_index("language_id")
    u = urielplus.URIELPlus()
    known = set(map(str, u.langs[0]))

    rows = []
    for code, candidates in LOCALES.items():
        iso = next((c for c in candidates if c in known and c in glotto.index), "")
        gc = glotto.loc[iso, "glottocode"] if iso else ""
        name, levels = code, []
        if gc in lineage.index:
            name = lineage.loc[gc, "language_name"]
            raw = lineage.loc[gc, "lineage"]
            levels = [x.strip() for x in str(raw).split(",")] if isinstance(raw, str) and raw.strip() else []
        family = levels[0] if levels else (f"{name} (isolate)" if iso else "unknown")
        rows.append({"code": code, "iso639_3": iso, "glottocode": gc, "name": name, "family": family,
                     "genus": _genus(levels, family) if levels else family, "lineage": " > ".join(levels)})
    langs = pd.DataFrame(rows)
    isos = sorted({i for i in langs["iso639_3"] if i})

    dist_rows = []
    for kind in DISTANCE_TYPES:
        has, agg = _uriel_vectors(u, kind)
        row_of = {str(x): i for i, x in enumerate(u.langs[u.map_new_distance_to_loaded_features(kind)])}
        for a, b in itertools.combinations(isos, 2):
            d = _uriel_distance(has, agg, row_of[a], row_of[b])
            note = "" if d is not None else f"no shared {kind} features"
            if d == 0.0:
                shared = int((has[row_of[a]] & has[row_of[b]]).sum())
                note = (f"0.0 over {shared} shared features: identical URIEL vectors (e.g. the same deepest "
                        "lineage node, or few features), not identical languages")
            dist_rows.append({"lang_a": a, "lang_b": b, "type": kind,
                              "distance": "" if d is None else f"{d:.4f}", "note": note})
        # the vectorised computation must agree with urielplus's own on a sample of pairs
        rng = np.random.default_rng(0)
        for _ in range(20):
            a, b = rng.choice(isos, 2, replace=False)
            mine = _uriel_distance(has, agg, row_of[a], row_of[b])
            try:
                theirs = float(u.new_distance(kind, [str(a), str(b)]))
            except ValueError:
                theirs = None
            if (mine is None) != (theirs is None) or (mine is not None and abs(mine - theirs) > 1e-3):
                raise RuntimeError(f"{kind} {a}-{b}: {mine} here, {theirs} from urielplus")
    out_dir.mkdir(parents=True, exist_ok=True)
    langs.to_csv(out_dir / LANGUAGES_FILE, sep="\t", index=False)
    pd.DataFrame(dist_rows).to_csv(out_dir / DISTANCES_FILE, sep="\t", index=False)
    print(f"{len(langs)} locales ({(langs['iso639_3'] == '').sum()} unknown to URIEL+), "
          f"{len(dist_rows)} distances written to {out_dir}")


def main(argv=None) -> int:  # pragma: no cover
    parser = argparse.ArgumentParser(prog="python -m cltm.analysis.families")
    parser.add_argument("--build", action="store_true", help="rebuild the shipped tables (needs urielplus)")
    parser.add_argument("--out", default=str(Path(__file__).parent / TABLES))
    parser.add_argument("codes", nargs="*", help="print the family table of these codes")
    args = parser.parse_args(argv)
    if args.build:
        build(Path(args.out))
    if args.codes:
        print(language_table(args.codes).to_string())
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
