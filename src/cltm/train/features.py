"""Frozen-encoder features for probe mode: every hidden layer of every selected clip, pooled over time, once.

A language's feature store is one float16 array `[rows, layers, dim * len(stats)]` (`<lang>.npy`,
memory-mapped) and its index (`<lang>.tsv`: one row per array row, in order: utt_id, trim_db, n_samples,
stats, then the audio index's metadata columns: speaker, gender and any label column). `layers` is the
encoder's num_hidden_layers + 1 (the input of the first transformer layer, then each layer's output, as
`cltm.model.heads.layer_states` numbers them); the last axis holds the time mean of each layer's frames, then
(with `std`) their standard deviation over time (population std), each `dim` = hidden_size wide.

Every clip is fed exactly as fine-tuning evaluates it (`cltm.train.evaluate.eval_batches`: the encoder's input
normalisation, one clip at a time where padding would change its output, padded batches with an attention
mask where it provably does not): a clip's features do not depend on the clips it was batched with (up to
float rounding, far below float16's resolution).

Trimming. Speaker verification scores test clips after silence trimming (`tasks.<sv>.trim_db`, as
`SpeakerVerificationTask.evaluate` does), training clips untrimmed; classification uses untrimmed clips
throughout. So a store holds one untrimmed row per clip any task of the language references (train
single/extra and test), plus, for each speaker-verification task with a `trim_db`, a row of each of its
test clips trimmed at that level (`trim_db` column; empty = untrimmed). `FeatureStore.rows(utt_ids,
trim_db=...)` picks the variant; `feature_plan` says what a language's store must hold.
"""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cltm.data.audio import change_speed, trim_silence
from cltm.data.plan import selected_clips
from cltm.io import atomic_path, write_table
from cltm.model.device import to_device
from cltm.model.encoder import speech_inputs
from cltm.model.heads import layer_states
from cltm.train.evaluate import EVAL_BATCH, eval_batches
from cltm.train.probe import probe_settings

STATS = ("mean", "std")
INDEX_COLUMNS = ("utt_id", "trim_db", "n_samples", "stats")


def trim_key(trim_db, speed: float = 1.0) -> str:
    """A row variant's key in the index's `trim_db` column: the trimming level ("" untrimmed), then, for a
    test-time speed other than 1, `@<speed>` (`tta_speeds`)."""
    key = "" if trim_db is None else f"{float(trim_db):g}"
    return key if float(speed) == 1.0 else f"{key}@{float(speed):g}"


def feature_plan(tasks: dict, selections: dict[str, dict]) -> dict:
    """What one language's store holds, from the task objects (`cltm.tasks.configured_tasks(config)`) and the
    language's selections ({task: subsets}): {"utt_ids": sorted clips of every task's test + single + extra,
    "stats": the statistics any task's probe head reads (`cltm.train.probe.probe_settings`: mean, and std for
    speaker verification by default), "trim": {trim_db: sorted test clips of the speaker-verification
    tasks trimmed at that level}, "speeds": {(trim_db, speed): their test clips at each test-time speed
    other than 1 (`tta_speeds`)}}."""
    sv = [t for t in selections if tasks[t].kind == "speaker_verification"]
    wanted = {s for t in selections for s in probe_settings(tasks[t].kind, tasks[t].cfg)["stats"]}
    trim: dict[float, set] = {}
    speeds: dict[tuple, set] = {}
    for t in sv:
        db = tasks[t].cfg.get("trim_db")
        if db is not None:
            trim.setdefault(float(db), set()).update(selections[t]["test"])
        for speed in tasks[t].cfg.get("tta_speeds") or [1.0]:
            if float(speed) != 1.0:
                speeds.setdefault((None if db is None else float(db), float(speed)), set()).update(selections[t]["test"])
    return {"utt_ids": sorted(selected_clips(selections)), "stats": tuple(s for s in STATS if s in wanted),
            "trim": {db: sorted(u) for db, u in sorted(trim.items())},
            "speeds": {k: sorted(u) for k, u in sorted(speeds.items(), key=lambda kv: (str(kv[0][0]), kv[0][1]))}}


def _pool(states: list[torch.Tensor], keep: torch.Tensor | None, stats) -> torch.Tensor:
    """[batch, layers, dim * len(stats)] from the layer states [batch, frames, dim] (keep: [batch, frames])."""
    x = torch.stack(states, dim=1).float()  # [B, L, T, D]
    if keep is None:
        mean = x.mean(dim=2)
        std = x.var(dim=2, unbiased=False).sqrt() if "std" in stats else None
    else:
        k = keep[:, None, :, None].to(x.dtype)
        n = k.sum(dim=2)
        mean = (x * k).sum(dim=2) / n
        std = (((x - mean[:, :, None]) ** 2) * k).sum(dim=2).div(n).sqrt() if "std" in stats else None
    return torch.cat([{"mean": mean, "std": std}[s] for s in stats], dim=-1)


@torch.inference_mode()
def encode_clips(encoder, waves: list[np.ndarray], *, stats=("mean",), device="cpu", batch: int | None = None
                 ) -> np.ndarray:
    """float32 [clips, layers, dim * len(stats)] of whole clips through the frozen encoder (eval mode)."""
    if not stats or tuple(stats) != tuple(s for s in STATS if s in stats) or len(set(stats)) != len(stats):
        raise ValueError(f"stats must be some of {STATS} in that order, got {tuple(stats)}")
    device = torch.device(device)
    encoder.to(device).eval()
    inputs = speech_inputs(encoder)
    n_layers = encoder.config.num_hidden_layers + 1
    out = np.zeros((len(waves), n_layers, encoder.config.hidden_size * len(stats)), np.float32)
    order, pooled = [], []
    for idx, x, mask in eval_batches(waves, inputs, batch=batch or EVAL_BATCH):
        mask = to_device(mask, device)
        last, states = layer_states(encoder, to_device(x, device), mask)
        keep = None if mask is None else encoder._get_feature_vector_attention_mask(last.shape[1], mask)
        pooled.append(_pool(states, keep, stats))  # stays on the device: one copy for all the batches
        order += idx
    if pooled:
        out[order] = torch.cat(pooled).cpu().numpy()
    return out


def extract_features(encoder, audio, utt_ids, out_npy: str | Path, out_index: str | Path, *, stats=("mean",),
                     trim: dict | None = None, speeds: dict | None = None, sample_rate: int = 16000, device="cpu",
                     batch: int | None = None, chunk: int = 256, log=print) -> "FeatureStore":
    """Encode clips of `audio` (a `cltm.data.audio.AudioStore`) once and write a feature store atomically.

    `utt_ids`: the untrimmed rows; `trim`: {trim_db: utt_ids} extra rows of those clips silence-trimmed at
    that level (`cltm.data.audio.trim_silence`, as speaker verification trims test clips); `speeds`:
    {(trim_db, speed): utt_ids} extra rows at a test-time speed (`cltm.data.audio.change_speed`);
    `feature_plan` gives all three for a language. Clips are read and encoded `chunk` at a time into a memory-mapped array, so
    memory stays small whatever the store's size."""
    jobs = [(u, None, 1.0) for u in sorted(set(utt_ids))]
    for db, ids in sorted((trim or {}).items()):
        jobs += [(u, float(db), 1.0) for u in sorted(set(ids))]
    for (db, speed), ids in (speeds or {}).items():
        jobs += [(u, None if db is None else float(db), float(speed)) for u in sorted(set(ids))]
    n_layers = encoder.config.num_hidden_layers + 1
    width = encoder.config.hidden_size * len(stats)
    n_samples = []
    with atomic_path(out_npy) as tmp:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(len(jobs), n_layers, width))
        for start in range(0, len(jobs), chunk):
            part = jobs[start:start + chunk]
            waves = [change_speed(audio[u] if db is None else trim_silence(audio[u], db), speed, sample_rate)
                     for u, db, speed in part]
            n_samples += [w.size for w in waves]
            array[start:start + len(part)] = encode_clips(encoder, waves, stats=stats, device=device, batch=batch)
            log(f"features: {start + len(part)}/{len(jobs)} clips")
        array.flush()
        del array
    meta = audio.index.drop(columns=[c for c in ("offset", "n_samples") if c in audio.index.columns])
    index = pd.DataFrame({"utt_id": [u for u, _, _ in jobs], "trim_db": [trim_key(db, sp) for _, db, sp in jobs],
                          "n_samples": n_samples, "stats": "+".join(stats)})
    index = pd.concat([index, meta.loc[index["utt_id"]].reset_index(drop=True)], axis=1)
    write_table(out_index, index, index=False)
    return FeatureStore(out_npy, out_index)


class FeatureStore:
    """Read access to a language's features: `store[utt_id]` = float16 [layers, dim * len(stats)] of the
    untrimmed clip; `rows(utt_ids, trim_db=None)` a float16 array of several; `meta(utt_id)` its metadata
    (speaker, gender, label columns; a dict); `stats`, `layers`, `dim`.

    `block(utt_ids, ...)` gives float32 torch tensors of a fixed list of clips (a subset: single, extra,
    test), kept for the life of the store, so that the runs of one process share the conversion (a probe
    sweep reads every subset once, not once per run)."""

    def __init__(self, npy: str | Path, index: str | Path):
        self.features = np.load(npy, mmap_mode="r")
        header = pd.read_csv(index, sep="\t", nrows=0).columns
        self.index = pd.read_csv(index, sep="\t", dtype={c: str for c in header if c != "n_samples"},
                                 keep_default_na=False)
        if len(self.index) != len(self.features):
            raise ValueError(f"feature store {npy}: {len(self.features)} rows but its index {index} lists "
                             f"{len(self.index)}")
        self.stats = tuple(self.index["stats"].iloc[0].split("+")) if len(self.index) else ("mean",)
        self.layers = self.features.shape[1]
        self.dim = self.features.shape[2] // len(self.stats)
        self._row = {(u, t): i for i, (u, t) in enumerate(zip(self.index["utt_id"], self.index["trim_db"]))}
        untrimmed_first = self.index.assign(_t=self.index["trim_db"] != "").sort_values("_t", kind="stable")
        self._meta = untrimmed_first.drop(columns="_t").drop_duplicates("utt_id").set_index("utt_id")
        self._meta_rows: dict | None = None
        self._blocks: dict = {}

    def __len__(self) -> int:
        return len(self.features)

    def row_numbers(self, utt_ids, trim_db=None, speed: float = 1.0) -> np.ndarray:
        key = trim_key(trim_db, speed)
        try:
            return np.array([self._row[(u, key)] for u in utt_ids], dtype=np.int64)
        except KeyError as err:
            what = "untrimmed" if key == "" else f"trimmed at {key} dB"
            raise KeyError(f"clip {err.args[0][0]} ({what}) is not in this feature store") from None

    def rows(self, utt_ids, trim_db=None, speed: float = 1.0) -> np.ndarray:
        return np.asarray(self.features[self.row_numbers(utt_ids, trim_db, speed)])

    def __getitem__(self, utt_id: str) -> np.ndarray:
        return np.asarray(self.features[self.row_numbers([utt_id])[0]])

    def meta(self, utt_id: str) -> dict:
        """The clip's metadata (speaker, gender, label columns, n_samples), as `AudioStore.meta` gives it but
        as a plain dict (fast: a probe run reads thousands)."""
        if self._meta_rows is None:
            self._meta_rows = self._meta.to_dict("index")
        return self._meta_rows[utt_id]

    def columns(self, stats) -> slice | list:
        """Indices of the last axis that hold `stats` (a prefix or all of the stored ones)."""
        missing = [s for s in stats if s not in self.stats]
        if missing:
            raise ValueError(f"the feature store holds {'+'.join(self.stats)}, not {'+'.join(missing)}")
        return [i for s in stats for i in range(self.stats.index(s) * self.dim, (self.stats.index(s) + 1) * self.dim)]

    def block(self, utt_ids, *, trim_db=None, stats=("mean",), normalize: bool = False, layout: str = "lnf",
              speed: float = 1.0) -> torch.Tensor:
        """float32 features of `utt_ids` (cached): layout 'lnf' = [layers, clips, features] contiguous
        (what the probe's layer mixing reads fastest: one long matrix-vector product per minibatch),
        'nfl' = [clips, features, layers], 'nlf' = [clips, layers, features]. `normalize`: each
        clip's pooled vector of each layer and stat made zero-mean / unit-variance over its `dim` values
        (parameter-free layer normalisation, SUPERB's weighted-sum `layer_norm`; per clip, so the same in
        every run)."""
        key = (tuple(utt_ids), trim_key(trim_db, speed), tuple(stats), bool(normalize), layout)
        if key not in self._blocks:
            if layout not in ("lnf", "nfl", "nlf"):
                raise ValueError(f"layout must be lnf, nfl or nlf, got {layout!r}")
            rows = self.row_numbers(utt_ids, trim_db, speed)
            if layout == "lnf":
                # layer by layer into the block: no float32 [clips, layers, features] copy beside it (a
                # paper-size speaker block is 80 MB); each value as the whole array's conversion gives it
                # (the normalisation is per clip, layer and stat)
                x = torch.empty((self.layers, len(rows), self.dim * len(stats)))
                for layer in range(self.layers):
                    x[layer] = self._float32(self.features[rows, layer], stats, normalize)
            else:
                x = self._float32(self.features[rows], stats, normalize)  # [clips, layers, features]
                if layout == "nfl":
                    x = x.transpose(1, 2).contiguous()
            self._blocks[key] = x
        return self._blocks[key]

    def _float32(self, x: np.ndarray, stats, normalize: bool) -> torch.Tensor:
        """float32 of stored rows [..., dim * len(self.stats)]: the `stats` columns, each pooled vector of
        `dim` values layer-normalised (`normalize`)."""
        if tuple(stats) != self.stats:
            x = x[..., self.columns(stats)]
        x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if normalize:
            shape = x.shape
            x = torch.nn.functional.layer_norm(x.reshape(*shape[:-1], len(stats), self.dim), (self.dim,),
                                               eps=1e-5).reshape(shape)
        return x

    def release(self) -> None:
        """Let go of the pages of the memory-mapped array this process has read: they count in its resident
        memory while mapped (a paper-size language's store is about 220 MB). The cached blocks stay; the
        file stays in the OS's page cache, so reading it again costs little. No-op without a memory map."""
        mapped = getattr(self.features, "_mmap", None)  # numpy.memmap's mmap.mmap object
        if mapped is not None and hasattr(mmap, "MADV_DONTNEED"):
            mapped.madvise(mmap.MADV_DONTNEED)  # a read-only file mapping: pages are re-read, never lost

    def clear(self) -> None:
        """Drop the cached blocks (their memory) and the mapped pages read so far (`release`)."""
        self._blocks.clear()
        self.release()

