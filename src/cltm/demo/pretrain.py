"""Pre-train a tiny HuBERT once, on synthetic speech: the demo's stand-in for mHuBERT-147.

The method measures what fine-tuning a *pretrained* multilingual encoder does with more target data
or with donor data. A randomly initialised encoder has nothing to transfer, and fine-tuning it from
scratch on a few dozen clips barely learns, so the demo ships this small pretrained encoder instead
(`models/tiny-hubert-synth/`, written by `python -m cltm.demo.pretrain`).

It is HuBERT's first iteration at toy scale (Hsu et al., 2021):
1. speech in languages *outside* the demo's matrix (German, Russian, Basque by default), synthesised
   with eSpeak NG by `cltm.demo.synth` from speakers of their own;
2. 39-dimensional MFCC frames (13 cepstra + deltas + delta-deltas, per-utterance mean and variance
   normalised) on HuBERT's frame grid (25 ms windows, 20 ms hop), clustered by k-means;
3. the encoder, with spans of its frames replaced by the learned mask embedding, predicts the cluster
   of every masked frame (cross-entropy on masked frames only) through a linear layer that is
   dropped afterwards.

No label (speaker, gender, language) is used. Everything is deterministic for a given seed on CPU.
It is a toy: the encoder learns acoustic structure of synthetic speech, not of human speech.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

from cltm.demo import synth

SAMPLE_RATE = 16000
WINDOW, HOP = 400, 320  # HuBERT's feature encoder: receptive field 400 samples, stride 320 (20 ms)

# The tiny encoder of the demo (HubertConfig keys). Dropout off: a toy model trained briefly.
TINY_CONFIG = {
    "hidden_size": 64,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "intermediate_size": 128,
    "conv_dim": [16, 16, 16, 16, 16, 16, 16],
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 4,
    "hidden_dropout": 0.0,
    "attention_dropout": 0.0,
    "activation_dropout": 0.0,
    "feat_proj_dropout": 0.0,
    "final_dropout": 0.0,
    "layerdrop": 0.0,
    "mask_time_prob": 0.05,  # > 0 makes transformers create the learned mask embedding
}

DEFAULTS = {
    "languages": ["de", "ru", "eu"],
    "speakers_per_gender": 24,
    "utterances_per_speaker": 8,
    "corpus_seed": 1001,  # not the demo corpus's seed: no voice of the matrix is reused
    "clusters": 50,
    "kmeans_iterations": 25,
    "steps": 5000,
    "batch_size": 8,
    "crop_seconds": 2.0,
    "lr": 1.0e-3,
    "warmup_steps": 200,
    "weight_decay": 0.01,
    "mask_prob": 0.65,  # HuBERT: 0.8 of frames as span starts x span 10; here the expected masked share
    "mask_length": 5,
    "seed": 0,
}


def frame_count(n_samples: int) -> int:
    """Frames HuBERT's feature encoder gives for a clip of `n_samples` (its conv stack, exactly)."""
    return max(0, (n_samples - WINDOW) // HOP + 1)


def _mel_filterbank(n_mels: int = 40, n_fft: int = 512, sr: int = SAMPLE_RATE) -> np.ndarray:
    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    edges = 700.0 * (10 ** (np.linspace(hz_to_mel(20.0), hz_to_mel(sr / 2), n_mels + 2) / 2595.0) - 1.0)
    bins = np.fft.rfftfreq(n_fft, 1.0 / sr)
    bank = np.zeros((n_mels, bins.size))
    for m in range(n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        bank[m] = np.clip(np.minimum((bins - lo) / (mid - lo), (hi - bins) / (hi - mid)), 0.0, None)
    return bank


_MEL = _mel_filterbank()
_DCT = np.cos(np.pi / 40 * (np.arange(40)[None, :] + 0.5) * np.arange(13)[:, None])  # DCT-II, 13 x 40


def _deltas(x: np.ndarray) -> np.ndarray:
    padded = np.pad(x, ((2, 2), (0, 0)), mode="edge")
    return (padded[3:-1] - padded[1:-3] + 2 * (padded[4:] - padded[:-4])) / 10.0


def mfcc_features(wave: np.ndarray) -> np.ndarray:
    """(frames, 39) MFCC + deltas + delta-deltas on HuBERT's frame grid, mean/variance normalised."""
    n = frame_count(wave.size)
    if n == 0:
        return np.zeros((0, 39), dtype=np.float32)
    x = np.append(wave[0], wave[1:] - 0.97 * wave[:-1]).astype(np.float64)
    idx = np.arange(WINDOW)[None, :] + HOP * np.arange(n)[:, None]
    frames = x[idx] * np.hamming(WINDOW)
    power = np.abs(np.fft.rfft(frames, n=512)) ** 2
    cep = np.log(power @ _MEL.T + 1e-10) @ _DCT.T
    d1 = _deltas(cep)
    feats = np.concatenate([cep, d1, _deltas(d1)], axis=1)
    feats = (feats - feats.mean(0)) / (feats.std(0) + 1e-5)
    return feats.astype(np.float32)


def kmeans(x: np.ndarray, k: int, iterations: int, rng: np.random.Generator) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding; returns the (k, dim) centroids."""
    centroids = [x[rng.integers(len(x))]]
    d2 = ((x - centroids[0]) ** 2).sum(1)
    for _ in range(1, k):
        centroids.append(x[rng.choice(len(x), p=d2 / d2.sum())])
        d2 = np.minimum(d2, ((x - centroids[-1]) ** 2).sum(1))
    c = np.stack(centroids)
    for _ in range(iterations):
        assign = assign_clusters(x, c)
        for j in range(k):
            members = x[assign == j]
            c[j] = members.mean(0) if len(members) else x[rng.integers(len(x))]
    return c


def assign_clusters(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    d = (x**2).sum(1)[:, None] - 2 * x @ centroids.T + (centroids**2).sum(1)[None, :]
    return d.argmin(1)


def span_mask(n_frames: int, prob: float, length: int, generator: torch.Generator) -> torch.Tensor:
    """Boolean (n_frames,) mask of spans of `length` frames covering about `prob` of the frames (at least one span)."""
    starts = max(1, round(prob * n_frames / length))
    mask = torch.zeros(n_frames, dtype=torch.bool)
    for s in torch.randperm(max(1, n_frames - length + 1), generator=generator)[:starts].tolist():
        mask[s:s + length] = True
    return mask


def synthetic_corpus(languages, speakers_per_gender: int, utterances_per_speaker: int, seed: int, log=print):
    """Waveforms (float32, 16 kHz) of the pretraining corpus, synthesised in memory."""
    waves = []
    for lang in languages:
        sentences = synth.load_sentences(lang)
        for speaker in synth.make_speakers(lang, speakers_per_gender, seed):
            for _, audio in synth.speaker_utterances(lang, speaker, utterances_per_speaker, seed, sentences):
                waves.append(audio.astype(np.float32))
        log(f"{lang}: {2 * speakers_per_gender} speakers, {len(waves)} clips so far")
    return waves


def pretrain(out_dir: str | Path, *, log=print, **overrides) -> dict:
    """Synthesise the corpus, cluster its MFCCs, pre-train the encoder; save it to `out_dir`
    (config.json, model.safetensors, pretraining.json, README.md); return the recipe and figures."""
    recipe = {**DEFAULTS, **overrides}
    unknown = set(overrides) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown pretraining settings: {', '.join(sorted(unknown))} (known: {', '.join(DEFAULTS)})")
    t0 = time.perf_counter()
    torch.manual_seed(recipe["seed"])
    rng = np.random.default_rng(recipe["seed"])
    waves = synthetic_corpus(recipe["languages"], recipe["speakers_per_gender"], recipe["utterances_per_speaker"],
                             recipe["corpus_seed"], log=log)
    crop = int(recipe["crop_seconds"] * SAMPLE_RATE)
    waves = [w for w in waves if w.size >= WINDOW + HOP]
    feats = [mfcc_features(w) for w in waves]
    pool = np.concatenate(feats)
    sample = pool[rng.choice(len(pool), size=min(len(pool), 20000), replace=False)]
    centroids = kmeans(sample, recipe["clusters"], recipe["kmeans_iterations"], rng)
    targets = [torch.from_numpy(assign_clusters(f, centroids)) for f in feats]
    hours = sum(w.size for w in waves) / SAMPLE_RATE / 3600
    log(f"{len(waves)} clips ({hours:.2f} h), {len(pool)} frames, {recipe['clusters']} clusters "
        f"({time.perf_counter() - t0:.0f} s)")

    model = HubertModel(HubertConfig(**TINY_CONFIG))
    head = torch.nn.Linear(TINY_CONFIG["hidden_size"], recipe["clusters"])
    params = list(model.parameters()) + list(head.parameters())
    optimiser = torch.optim.AdamW(params, lr=recipe["lr"], weight_decay=recipe["weight_decay"])
    warmup, total = recipe["warmup_steps"], recipe["steps"]
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min((s + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(1.0, s / total)))))
    generator = torch.Generator().manual_seed(recipe["seed"])
    model.train()
    torch.backends.mkldnn.enabled = False  # the narrow conv1d backward is faster with PyTorch's own kernels
    losses, accs = [], []
    for step in range(total):
        idx = torch.randint(len(waves), (recipe["batch_size"],), generator=generator).tolist()
        length = min(crop, min(waves[i].size for i in idx))
        n_frames = frame_count(length)
        length = (n_frames - 1) * HOP + WINDOW  # on the frame grid, so a crop never runs past its clip
        x, y = [], []
        for i in idx:
            f0 = int(torch.randint(0, frame_count(waves[i].size) - n_frames + 1, (1,), generator=generator))
            x.append(torch.from_numpy(waves[i][f0 * HOP:f0 * HOP + length]))
            y.append(targets[i][f0:f0 + n_frames])
        x, y = torch.stack(x), torch.stack(y)
        mask = torch.stack([span_mask(n_frames, recipe["mask_prob"], recipe["mask_length"], generator)
                            for _ in idx])
        hidden = model(x, mask_time_indices=mask).last_hidden_state
        logits = head(hidden[mask])
        loss = F.cross_entropy(logits, y[mask])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimiser.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        accs.append(float((logits.argmax(-1) == y[mask]).float().mean()))
        if (step + 1) % max(1, total // 20) == 0 or step + 1 == total:
            log(f"step {step + 1}/{total}: masked-prediction loss {np.mean(losses[-50:]):.3f}, "
                f"accuracy {np.mean(accs[-50:]):.3f} ({time.perf_counter() - t0:.0f} s)")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    # pre-trained on the waveform as it is: the encoder job must not normalise it either
    Wav2Vec2FeatureExtractor(do_normalize=False, return_attention_mask=False).save_pretrained(out)
    summary = {
        "recipe": recipe,
        "clips": len(waves), "hours": round(hours, 3), "frames": int(len(pool)),
        "parameters": sum(p.numel() for p in model.parameters()),
        "chance_loss": round(math.log(recipe["clusters"]), 3),
        "first_loss": round(float(np.mean(losses[:50])), 3), "final_loss": round(float(np.mean(losses[-50:])), 3),
        "final_accuracy": round(float(np.mean(accs[-50:])), 3),
        "wall_s": round(time.perf_counter() - t0, 1), "torch": torch.__version__,
    }
    (out / "pretraining.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "README.md").write_text(_model_card(summary, out))
    return summary


def _model_card(s: dict, out: Path) -> str:
    r = s["recipe"]
    sizes = f"hidden size {TINY_CONFIG['hidden_size']}, {TINY_CONFIG['num_hidden_layers']} layers"
    return f"""# tiny-hubert-synth: a toy pretrained HuBERT for the cltm demo (SYNTHETIC)

Written by `python -m cltm.demo.pretrain --out {out}` (src/cltm/demo/pretrain.py); the exact recipe
and figures are in `pretraining.json`. It is a stand-in for mHuBERT-147 so that the demo runs on a
CPU in minutes, not a speech model: it has only heard synthetic eSpeak NG speech.

- Architecture: transformers' HubertModel, {s['parameters']:,} parameters ({sizes}).
- Data: {s['clips']} synthetic clips ({s['hours']} h) in {', '.join(r['languages'])} (languages outside the demo's
  matrix), {2 * r['speakers_per_gender']} speakers per language, corpus seed {r['corpus_seed']}. No labels used.
- Objective: HuBERT's first iteration: predict the k-means cluster ({r['clusters']} clusters of 39-d MFCC
  frames) of masked frames (spans of {r['mask_length']} frames, about {r['mask_prob']:.0%} masked).
- Training: {r['steps']} steps, batch {r['batch_size']} x {r['crop_seconds']} s crops, AdamW lr {r['lr']}
  (warm-up {r['warmup_steps']} steps, cosine decay), seed {r['seed']}, on CPU in {s['wall_s']:.0f} s.
- Masked-prediction loss {s['first_loss']} -> {s['final_loss']} (chance {s['chance_loss']}),
  accuracy {s['final_accuracy']}.
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cltm.demo.pretrain", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="directory to write (config.json, model.safetensors, ...)")
    parser.add_argument("--threads", type=int, default=2)
    for key, value in DEFAULTS.items():
        kind = (lambda s: s.split(",")) if isinstance(value, list) else type(value)
        parser.add_argument(f"--{key.replace('_', '-')}", type=kind, default=value)
    args = vars(parser.parse_args(argv))
    out, threads = args.pop("out"), args.pop("threads")
    torch.set_num_threads(threads)
    summary = pretrain(out, log=lambda m: print(m, flush=True), **args)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
