"""Speakers shared by two languages, through Snakemake: a language added later whose test voices are
training data of a language selected before it is stopped at the data report, before any run, and the
command the message gives mends it. Selection and audio only (the target results/data_report.tsv)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from leakage import assert_selections_disjoint
from workflows import REDUCED, snakemake, write_config
from conftest import copy_checkout


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A manifest of real synthetic speech in which every `tr` speaker id is also an `en` one (as a
    Common Voice contributor's client_id is in every locale they record)."""
    from cltm.demo.synth import synthesize_language

    root = tmp_path_factory.mktemp("shared")
    frames = []
    for lang in ("en", "es", "tr"):
        synthesize_language(lang, root / lang, n_speakers_per_gender=6, utterances_per_speaker=6, seed=5,
                            clip_format="flac")
        tsv = pd.read_csv(root / lang / "validated.tsv", sep="\t", dtype=str)
        frames.append(pd.DataFrame({"path": [str(root / lang / "clips" / p) for p in tsv["path"]],
                                    "speaker": tsv["client_id"], "gender": tsv["gender"], "language": lang}))
    en, es, tr = frames
    # the i-th tr speaker of each gender is the i-th en speaker of that gender
    for gender in ("male_masculine", "female_feminine"):
        en_ids = list(dict.fromkeys(en.loc[en["gender"] == gender, "speaker"]))
        tr_ids = list(dict.fromkeys(tr.loc[tr["gender"] == gender, "speaker"]))
        tr["speaker"] = tr["speaker"].replace(dict(zip(tr_ids, en_ids)))
    manifest = root / "manifest.tsv"
    pd.concat([en, es, tr]).to_csv(manifest, sep="\t", index=False)
    return manifest


def _config(manifest: Path, languages: list[str]) -> dict:
    cfg = json.loads(json.dumps(REDUCED))
    cfg.update(languages=languages, corpus={"type": "manifest", "manifest": {"path": str(manifest)}})
    return cfg


def _subsets(work: Path, langs) -> dict:
    return {lang: json.loads((work / f"results/selection/{lang}.json").read_text()) for lang in langs}


def test_a_language_added_later_cannot_leak_its_test_voices(corpus, tmp_path):
    work = copy_checkout(tmp_path / "work")
    target = "results/data_report.tsv"
    snakemake(work, target, "--cores", "2", "--configfile", write_config(work, "exp.yaml", _config(corpus, ["en", "es"])))

    before = (work / "results/selection/es.json").read_bytes()
    # tr added: its test speakers are picked on its own; en's selection is not redone (its runs stay valid) ...
    write_config(work, "exp.yaml", _config(corpus, ["en", "es", "tr"]))
    proc = snakemake(work, target, "--cores", "2", "--configfile", "exp.yaml", check=False)
    log = (work / "results/logs/data_report.log").read_text()
    assert proc.returncode != 0, "the data report let a test voice of tr train in en"
    assert "test speaker(s) of 'tr' are in the training subsets of 'en'" in log
    assert "no training was started" in log and "snakemake results/selection/en.json -f" in log
    # ... and tr's own selection already keeps en's test voices out of tr's training
    plans = _subsets(work, ["en", "es", "tr"])
    en_test = set(plans["en"]["gender"]["test_speakers"])
    tr_manifest = pd.read_csv(work / "results/manifests/tr.tsv", sep="\t", dtype=str).set_index("utt_id")
    for task, sel in plans["tr"].items():
        assert not en_test & set(tr_manifest.loc[sel["single"] + sel["extra"], "speaker"]), task

    # the command the message gives redoes en's selection; the usual command then redoes what depends on it
    snakemake(work, "results/selection/en.json", "-f", "--cores", "1", "--configfile", "exp.yaml")
    snakemake(work, target, "--cores", "2", "--configfile", "exp.yaml")
    speaker_of = {}
    for lang in ("en", "es", "tr"):
        m = pd.read_csv(work / f"results/manifests/{lang}.tsv", sep="\t", dtype=str)
        speaker_of[lang] = dict(zip(m["utt_id"], m["speaker"]))
    assert assert_selections_disjoint(_subsets(work, ["en", "es", "tr"]), speaker_of) == 2 * 3 * 4
    assert (work / "results/selection/es.json").read_bytes() == before  # es shares no speaker: untouched
    dry = snakemake(work, target, "-n", "--configfile", "exp.yaml")
    assert "Nothing to be done" in dry.stdout + dry.stderr
