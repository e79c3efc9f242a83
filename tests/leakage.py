"""One check shared by every workflow test: no run trains on a voice of its target's test set.

Speakers are identified across the whole corpus (`data.speaker_ids: corpus`): an id in two languages is
one person. For every run, its training speakers (the target's `single`, plus `extra` for dual, plus the
donor's `single` for a bilingual run) must be disjoint from its target's test speakers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


def training_clips(target: str, condition: str, subsets: dict[str, dict]) -> list[tuple[str, str]]:
    """(language, utt_id) of a condition's training set, read from the subsets alone."""
    items = [(target, u) for u in subsets[target]["single"]]
    if condition == "dual":
        items += [(target, u) for u in subsets[target]["extra"]]
    elif condition.startswith("donor-"):
        donor = condition[len("donor-"):]
        items += [(donor, u) for u in subsets[donor]["single"]]
    return items


def leaks(target: str, condition: str, subsets: dict[str, dict], speaker_of: dict[str, dict[str, str]],
          speaker_ids: str = "corpus") -> set:
    """The target's test speakers that the run would train on (empty when there is no leakage)."""
    def who(lang, utt):
        return speaker_of[lang][utt] if speaker_ids == "corpus" else (lang, speaker_of[lang][utt])

    sel = subsets[target]
    test = {who(target, u) for u in sel["test"]}
    assert {speaker_of[target][u] for u in sel["test"]} == set(sel["test_speakers"])
    return test & {who(lang, u) for lang, u in training_clips(target, condition, subsets)}


def assert_selections_disjoint(selections: dict[str, dict[str, dict]], speaker_of: dict[str, dict[str, str]],
                               speaker_ids: str = "corpus") -> int:
    """Every condition of every target of `selections` ({lang: {task: selection}}); returns the count."""
    n = 0
    for task in {t for sel in selections.values() for t in sel}:
        subsets = {lang: sel[task] for lang, sel in selections.items() if task in sel}
        for target in subsets:
            for condition in ["single", "dual"] + [f"donor-{d}" for d in subsets if d != target]:
                bad = leaks(target, condition, subsets, speaker_of, speaker_ids)
                assert not bad, f"{task} {target} {condition}: trains on {len(bad)} test speaker(s) of {target}: {sorted(bad)[:3]}"
                n += 1
    return n


def assert_no_leakage(workdir: str | Path, speaker_ids: str = "corpus") -> int:
    """Read a finished workdir (results/manifests, results/subsets, every run JSON) and check every run."""
    results = Path(workdir) / "results"
    speaker_of = {}
    for path in sorted(results.glob("manifests/*.tsv")):
        m = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, usecols=["utt_id", "speaker"])
        speaker_of[path.stem] = dict(zip(m["utt_id"], m["speaker"]))
    runs = sorted(results.glob("*/runs/*/*/seed*.json"))
    assert runs, f"no run JSON under {results}"
    for path in runs:
        run = json.loads(path.read_text())
        task, target, condition = run["task"], run["target"], run["condition"]
        # a probe twin (`subsets_from`) trains on its fine-tuning twin's subsets
        source = json.loads((results / task / "settings.json").read_text())["settings"]["task"].get("subsets_from", task)
        subsets = {p.stem: json.loads(p.read_text()) for p in (results / "subsets" / source).glob("*.json")}
        items = training_clips(target, condition, subsets)
        assert run["sizes"]["train_clips"] == len(items), f"{path}: the run trained on other clips than its subsets"
        bad = leaks(target, condition, subsets, speaker_of, speaker_ids)
        assert not bad, f"{path}: trains on {len(bad)} of {target}'s test speakers: {sorted(bad)[:3]}"
    return len(runs)
