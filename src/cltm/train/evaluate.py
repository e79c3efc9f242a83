"""Evaluation of a fine-tuned model on the target's test set: whole clips, outputs per clip, then the
task's own scoring (`score` of `cltm.tasks`: macro-F1 of class probabilities, or cosine trials of
embeddings). The outputs stay on the device until the evaluation ends and come back to the host in one copy
(one wait for the device per evaluation, not one per batch or clip)."""

from __future__ import annotations

import numpy as np
import torch

from cltm.data.audio import change_speed, trim_silence
from cltm.model.device import to_device
from cltm.model.encoder import SpeechInputs
from cltm.model.heads import Classifier
from cltm.model.precision import autocast, matmul_precision, precision_of

EVAL_BATCH = 8  # clips per evaluation batch


def eval_batches(waves: list[np.ndarray], inputs: SpeechInputs, equal_lengths: bool = False,
                  batch: int = EVAL_BATCH):
    """(indices, values, mask) over whole clips, in batches of up to `batch` (default EVAL_BATCH): where
    padding leaves a clip's output unchanged, clips of similar length padded together (sorted by length); otherwise
    (a group-normalised feature encoder, which takes no mask) one clip at a time, or with `equal_lengths`
    clips of exactly the same length together, unpadded, each clip's output the one it gets alone up to
    float rounding (a clip of a length no other clip has goes alone)."""
    order = sorted(range(len(waves)), key=lambda i: waves[i].size, reverse=True)
    if inputs.padded_batches:
        groups = [order[b:b + batch] for b in range(0, len(order), batch)]
    else:
        groups = []
        for i in order:
            if (equal_lengths and groups and len(groups[-1]) < batch
                    and waves[groups[-1][0]].size == waves[i].size):
                groups[-1].append(i)
            else:
                groups.append([i])
    for idx in groups:
        yield idx, *inputs.pad([waves[i] for i in idx])


def per_clip(model: Classifier, waves: list[np.ndarray], device: torch.device, fn, precision: str) -> torch.Tensor:
    """`fn`'s output (float32) for every clip, in `waves`' order, left on `device`: the batches' outputs stay
    there and are put back in clip order by a gather on the device, so evaluation waits for the device once,
    where its caller copies the result to the host, not after every batch."""
    model.to(device).eval()
    order: list[int] = []
    outs: list[torch.Tensor] = []
    # fp32, the paper protocol, keeps evaluation bit for bit what it was (a batched linear layer rounds
    # differently from the clip alone, ~1e-8); the faster precisions, already not bit-exact, batch more
    for idx, x, mask in eval_batches(waves, model.inputs, equal_lengths=precision != "fp32"):
        with matmul_precision(device, precision), autocast(device, precision):
            outs.append(fn(to_device(x, device), to_device(mask, device)).float())
        order += idx
    place = torch.empty(len(order), dtype=torch.long)
    place[torch.tensor(order, dtype=torch.long)] = torch.arange(len(order))  # clip i is row place[i] of the batches'
    return torch.cat(outs).index_select(0, to_device(place, device))


@torch.inference_mode()
def embed_clips(model: Classifier, waves: list[np.ndarray], device: torch.device, precision: str = "fp32") -> torch.Tensor:
    """Whole clips (no crop), independent of batch composition, in the training's `precision`: in batches
    where that does not change a clip's output (clips padded with a mask where padding is exact; else, in
    tf32 and bf16, clips of equal length; equal to the clip alone up to float rounding, 1e-5 in the tests),
    one at a time otherwise. On the host (one copy: see `per_clip`)."""
    return per_clip(model, waves, device, model.embed, precision).cpu()


@torch.inference_mode()
def predict_proba(model: Classifier, waves: list[np.ndarray], device: torch.device, precision: str = "fp32") -> np.ndarray:
    """Class probabilities per whole clip, batched as embed_clips (the softmax on the host, as before)."""
    return torch.softmax(per_clip(model, waves, device, model, precision).cpu(), dim=-1).numpy()


def evaluate(task, model: Classifier, store, selection: dict, cfg: dict, device: torch.device,
             sample_rate: int = 16000):
    """(metrics, per-item scores) of a fine-tuned `model` on the target's test set (`selection["test"]`):
    class probabilities per clip for a classification task, embeddings of the silence-trimmed clips
    scored over the trial list for speaker verification (at each of the task's `tta_speeds`, averaged).
    `cfg` is the task's config section."""
    test = selection["test"]
    precision = precision_of(cfg.get("training") or {})
    if task.kind == "speaker_verification":
        waves = [trim_silence(store[u], cfg.get("trim_db")) for u in test]
        # test-time augmentation: the embeddings of each clip at every speed, averaged before scoring
        with torch.inference_mode():
            embeddings = [per_clip(model, [change_speed(w, speed, sample_rate) for w in waves], device, model.embed,
                                   precision) for speed in task.tta_speeds]
            embeddings = torch.stack(embeddings).cpu()  # the one wait for the device of this evaluation
        return task.score(test, embeddings.mean(dim=0), selection)
    return task.score(store, test, predict_proba(model, [store[u] for u in test], device, precision))
