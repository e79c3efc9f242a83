"""Benchmark: can an encoder's CLTM recover a transfer effect planted in a PAPER task (gender)?

The planted task of the demo (cltm.demo.plant) puts a known answer in a label made for the purpose. This
measures the other half of issue 19's ask: a known answer in gender itself, where each language shifts
where its male and female F0 ranges meet, so that donors with a far shift should hurt. It is a
measurement, not part of the workflow: with the demo's tiny encoder it does not pass the known-answer
verdict (docs/benchmarks.md, "A planted effect in gender"), so no shipped config plants it. Run it with
another encoder (`--encoder`, any directory `cltm.model.encoder.load_encoder` reads, e.g. a saved
mHuBERT-147) to see whether that one hears the plant.

    .venv/bin/python benchmarks/gender_plant.py [--timbre demo|neutral] [--data-seed 0] [--seeds 20]

1. **Voices.** Per language of `--shifts` (semitones), the demo's voices (config/config.yaml's corpus seed,
   `--speakers` per gender, `--clips` each) with every voice's median F0 moved by the language's shift
   (`cltm.demo.synth` draws F0 log-uniform in 85-140 Hz for men and 175-255 Hz for women; the shift moves
   both ranges and the point where they meet, 156.5 Hz). `--timbre demo` keeps the demo's gendered eSpeak
   variants and vocal-tract ranges (gender is audible without F0); `--timbre neutral` deals every variant to
   both genders and draws one vocal-tract range for all, so F0 is the only gender cue; `--timbre by_f0`
   deals each voice a variant that reaches its shifted F0 (and the one vocal-tract range), so the timbre
   follows F0 the same way in every language and gender is F0 and what goes with it. A voice whose
   shifted F0 lies beyond what its variant reaches is clipped there (counted and printed).
2. **Runs.** Each clip through the frozen encoder (every layer, time mean and std, standardised over all
   languages), then the workflow's design with a ridge read-out in place of a run: per target, a
   speaker-disjoint test set (`--test-voices` per gender, 4 clips each); per seed, `single` = N clips per
   class from the other voices (at most `--clips-per-voice` each), `dual` = those and N more, and
   `donor-<j>` = single plus N per class of donor j's training voices; the metric is ROC AUC on the test
   clips. A ridge read-out of frozen features is probe mode's kind of model, not fine-tuning.
3. **Known answer.** The CLTM, its Fieller intervals and row flags by `cltm.analysis.matrix.
   transfer_matrices` (seeds paired, as in the workflow), read by `cltm.analysis.known_answer` against the
   shift distance |s_target - s_donor| (carried in the known-answer table's distance column, in semitones):
   Mantel test, cells at the smallest distance (expected > 0), cells whose donor's boundary lies beyond
   the target's class centres (distance > 5.2 semitones, the female centre's distance from the meeting
   point: more than half of one target class sits on the wrong side of the donor's rule; expected < 0),
   flagged rows, and the verdict at the `analysis.known_answer` defaults (Mantel p <= 0.01, every nearest
   cell > 0, most far cells < 0, at most one row flagged).

About 20 s per data seed on 2 cores (the synthesis and encoding of 1,440 clips; the runs take 1-2 s).
SYNTHETIC voices with a planted effect: figures of the instrument, not of real languages.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))  # machine.py, also when the script is imported (tests)

import soxr  # noqa: E402

from machine import machine  # noqa: E402 - benchmarks/machine.py
from plant_cues import ridge  # noqa: E402 - benchmarks/plant_cues.py

from cltm.analysis.known_answer import pair_table, recovery_summary, verdict  # noqa: E402
from cltm.analysis.matrix import transfer_matrices  # noqa: E402
from cltm.defaults import ANALYSIS  # noqa: E402
from cltm.demo.synth import (_F0_HZ, _TRACT, SAMPLE_RATE, VARIANTS, _f0_limits, _rng, load_sentences,  # noqa: E402
                             make_speakers, synthesize)
from cltm.model.encoder import load_encoder  # noqa: E402
from cltm.tasks.metrics import binary_auc  # noqa: E402
from cltm.train.features import encode_clips  # noqa: E402

ENCODER = ROOT / "models" / "tiny-hubert-synth"
SHIFTS = "en:-6,tr:-4,es:-1,ru:1,fi:4,de:6"
MEET_HZ = math.sqrt(_F0_HZ["male"][1] * _F0_HZ["female"][0])
"""Where the demo's male and female F0 ranges meet (geometric middle of the gap between them)."""
OPPOSITE_ST = min(12 * math.log2(MEET_HZ / math.sqrt(_F0_HZ["male"][0] * _F0_HZ["male"][1])),
                  12 * math.log2(math.sqrt(_F0_HZ["female"][0] * _F0_HZ["female"][1]) / MEET_HZ))
"""A donor shifted further than this puts its boundary beyond one of the target's class centres (semitones)."""
NEUTRAL_TRACT = (min(_TRACT["male"][0], _TRACT["female"][0]), max(_TRACT["male"][1], _TRACT["female"][1]))


def shifted_voices(lang: str, shift: float, n_per_gender: int, seed: int, timbre: str):
    """(speakers, genders, clipped): the demo's speakers of `lang` with F0 moved by `shift` semitones."""
    speakers = make_speakers(lang, n_per_gender, seed)
    k = 2.0 ** (shift / 12.0)
    pool = [str(v) for v in _rng(seed, lang, 0).permutation(sorted(VARIANTS))]
    out, genders, clipped = [], [], 0
    for spk in speakers:
        v = spk.voice
        gender = "male" if spk.index % 2 == 0 else "female"
        f0 = v.f0_hz * k
        if timbre == "neutral":
            r = _rng(seed, lang, 7, spk.index)
            v = dataclasses.replace(v, variant=pool[spk.index % len(pool)],
                                    tract_factor=float(r.uniform(*NEUTRAL_TRACT)))
        elif timbre == "by_f0":
            r = _rng(seed, lang, 7, spk.index)
            tract = float(r.uniform(*NEUTRAL_TRACT))
            fits = [x for x in pool if _f0_limits(x, v.pitch_range, tract)[0] <= f0 <= _f0_limits(x, v.pitch_range, tract)[1]]
            v = dataclasses.replace(v, variant=str(r.choice(fits or pool)), tract_factor=tract)
        lo, hi = _f0_limits(v.variant, v.pitch_range, v.tract_factor)
        clipped += not lo <= f0 <= hi
        out.append(dataclasses.replace(v, f0_hz=float(np.clip(f0, lo, hi))))
        genders.append(gender)
    return out, genders, clipped


def encode_language(lang, shift, args, seed, encoder):
    voices, genders, clipped = shifted_voices(lang, shift, args.speakers, seed, args.timbre)
    sentences = load_sentences(lang)
    rng = np.random.default_rng([seed, 99, args.data_seed])
    waves, speaker, male = [], [], []
    for index, (voice, gender) in enumerate(zip(voices, genders)):
        for _ in range(args.clips):
            wave = synthesize(sentences[rng.integers(len(sentences))], voice.jittered(rng), rng=rng)
            waves.append(soxr.resample(wave, SAMPLE_RATE, 16000).astype(np.float32))
            speaker.append(index)
            male.append(gender == "male")
    x = encode_clips(encoder, waves, stats=("mean", "std"))
    return {"x": x.reshape(len(x), -1), "speaker": np.array(speaker), "y": np.array(male, dtype=int),
            "clipped": clipped}


def split(d: dict, lang_index: int, args) -> None:
    """The target's speaker-disjoint test set (clips 0-3 of `--test-voices` voices per gender) and pool."""
    rng = np.random.default_rng([args.data_seed, 100, lang_index])
    test = []
    for c in (0, 1):
        voices = np.unique(d["speaker"][d["y"] == c])
        test += rng.choice(voices, args.test_voices, replace=False).tolist()
    rank = np.zeros(len(d["speaker"]), dtype=int)
    for s in np.unique(d["speaker"]):
        rank[d["speaker"] == s] = np.arange((d["speaker"] == s).sum())
    d["test"] = np.isin(d["speaker"], test) & (rank < 4)
    d["pool"] = ~np.isin(d["speaker"], test)


def draw(d: dict, rng, n: int, per_voice: int, exclude=frozenset()) -> list[int]:
    """N clips per class from the pool, at most `per_voice` of a voice, none of `exclude`."""
    out = []
    for c in (0, 1):
        taken: dict[int, int] = {}
        for i in rng.permutation(np.flatnonzero(d["pool"] & (d["y"] == c))):
            s = int(d["speaker"][i])
            if i in exclude or taken.get(s, 0) >= per_voice:
                continue
            out.append(int(i))
            taken[s] = taken.get(s, 0) + 1
            if sum(taken.values()) == n:
                break
    return out


def ridge_auc(parts, target: dict, lam: float) -> float:
    a = np.concatenate([d["x"][i] for d, i in parts])
    y = 2.0 * np.concatenate([d["y"][i] for d, i in parts]) - 1.0
    test = target["test"]  # plant_cues.ridge: the same dual-form read-out (its centring offset leaves AUC as is)
    return float(binary_auc(target["y"][test], ridge(a, y, target["x"][test], lam)))


def runs_table(data: dict, langs: list[str], args) -> pd.DataFrame:
    rows = []
    for ti, t in enumerate(langs):
        for seed in range(1, args.seeds + 1):
            rng = np.random.default_rng([seed, ti])
            single = draw(data[t], rng, args.n, args.clips_per_voice)
            extra = draw(data[t], rng, args.n, args.clips_per_voice, exclude=frozenset(single))
            perf = {"single": ridge_auc([(data[t], single)], data[t], args.lam),
                    "dual": ridge_auc([(data[t], single + extra)], data[t], args.lam)}
            for di, j in enumerate(langs):
                if j != t:
                    donor = draw(data[j], np.random.default_rng([seed, ti, di, 9]), args.n, args.clips_per_voice)
                    perf[f"donor-{j}"] = ridge_auc([(data[t], single), (data[j], donor)], data[t], args.lam)
            rows += [{"target": t, "condition": c, "seed": seed, "roc_auc": v} for c, v in perf.items()]
    return pd.DataFrame(rows)


def plant_pairs(shifts: dict[str, float]) -> dict:
    """The known-answer table's plant: per ordered pair the shift distance (semitones) and expected sign."""
    langs = list(shifts)
    dist = {(t, j): abs(shifts[t] - shifts[j]) for t in langs for j in langs if t != j}
    nearest = min(dist.values())
    pairs = []
    for (t, j), d in dist.items():
        sign = 1 if d <= nearest + 1e-9 else (-1 if d > OPPOSITE_ST else 0)
        pairs.append({"target": t, "donor": j, "distance_deg": d, "planted_distance_deg": d,
                      "expected_cltm": float(sign), "expected_sign": sign})
    return {"pairs": pairs}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shifts", default=SHIFTS, help=f"lang:semitones,... (default {SHIFTS}; 6 languages "
                                                     "let the exact Mantel test reach p = 2/720)")
    ap.add_argument("--timbre", choices=("demo", "neutral", "by_f0"), default="demo")
    ap.add_argument("--encoder", default=str(ENCODER))
    ap.add_argument("--data-seed", type=int, default=0, help="clips, test sets and draws")
    ap.add_argument("--speakers", type=int, default=24, help="voices per gender and language")
    ap.add_argument("--clips", type=int, default=5, help="clips per voice")
    ap.add_argument("--test-voices", type=int, default=12, help="test voices per gender (4 clips each)")
    ap.add_argument("--n", type=int, default=6, help="training clips per class of single (the task's N)")
    ap.add_argument("--clips-per-voice", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--lam", type=float, default=1.0, help="ridge penalty (on standardised features)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the encoder")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    shifts = {k: float(v) for k, v in (x.split(":") for x in args.shifts.split(","))}
    langs = list(shifts)
    seed = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["corpus"]["demo"]["seed"]
    print(f"{machine()}; encoder {args.encoder}; timbre {args.timbre}; shifts {shifts} semitones; data seed "
          f"{args.data_seed}; N {args.n} per class ({args.clips_per_voice} per voice), {args.seeds} seeds")
    t0 = time.perf_counter()
    encoder = load_encoder(args.encoder)
    data = {lang: encode_language(lang, s, args, seed, encoder) for lang, s in shifts.items()}
    every = np.concatenate([d["x"] for d in data.values()])
    mu, sd = every.mean(0), every.std(0) + 1e-6
    for i, lang in enumerate(langs):
        data[lang]["x"] = (data[lang]["x"] - mu) / sd
        split(data[lang], i, args)
    t_encode = time.perf_counter() - t0
    result = transfer_matrices(runs_table(data, langs, args), "roc_auc", langs)
    flagged = result.baselines.index[result.baselines["flagged"]].tolist()
    pairs = pair_table(plant_pairs(shifts), result.cltm, result.cltm_se, result.cltm_ci_low, result.cltm_ci_high,
                       flagged=flagged)
    summary = recovery_summary(pairs)
    outcome = verdict(summary, ANALYSIS["known_answer"], null=False)

    print(f"\nvoices clipped to their variant's F0 reach: "
          + ", ".join(f"{lang} {data[lang]['clipped']}" for lang in langs))
    print("\ntarget shift  single  dual   gain    flag   CLTM by donor (" + " ".join(langs) + ")")
    for lang in langs:
        b = result.baselines.loc[lang]
        row = " ".join(f"{result.cltm.loc[lang, j]:+6.2f}" if j != lang else "     ." for j in langs)
        print(f"{lang:6s} {shifts[lang]:+5.1f}  {b['perf_single']:.3f}  {b['perf_dual']:.3f}  "
              f"{b['denominator']:+.3f}  {'yes' if b['flagged'] else 'no ':4s}  {row}")
    adj, opp, m = summary["adjacent"], summary["opposite"], summary["mantel"]
    print(f"\nMantel rho {m['rho']:+.2f}, p {m['p_value']:.4f} (exact, {m['permutations']} permutations); "
          f"nearest cells ({adj['distance_deg']:g} semitones) > 0: {adj['positive']} of {adj['cells']}; "
          f"far cells (> {OPPOSITE_ST:.1f} semitones) < 0: {opp['negative']} of {opp['cells']}; "
          f"flagged rows: {summary['n_flagged_rows']} {summary['flagged_rows']}")
    print(f"verdict at analysis.known_answer {outcome['thresholds']}: {outcome['headline']}")
    print(f"\n{t_encode:.0f} s synthesis and encoding, {time.perf_counter() - t0 - t_encode:.0f} s runs and "
          "statistics. SYNTHETIC voices with a planted effect: figures of the instrument.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
