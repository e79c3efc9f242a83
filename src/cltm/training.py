"""One lean fine-tuning loop shared by every task: encoder + pooling + linear head, cross-entropy."""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cltm.encoder import SpeechInputs, freeze_feature_encoder, speech_inputs


class Classifier(nn.Module):
    """Encoder, mean pooling over time, linear head.

    pooling 'last' uses the last layer; 'last4' the average of the last four hidden layers (the
    speaker embedding of the reference method), so the classifier trains the representation
    that verification later scores. With an attention mask (clips padded in one batch) the mean runs
    over each clip's own frames only (the model's own mapping of samples to frames).

    `inputs` (`cltm.encoder.SpeechInputs`, loaded with the encoder) say how waveforms are fed: per-segment
    normalisation, and whether clips of different lengths may be padded into one batch.

    LayerDrop (the encoder's `layerdrop`, kept as configured) skips whole transformer layers at random
    during training. transformers 5 then leaves a skipped layer out of `hidden_states` (they are
    recorded by hooks on the layers that ran), so `hidden_states[-4:]` would name other layers at each
    step, and with every layer skipped the tuple is empty. Here the states are taken by layer index
    instead: a skipped layer's output is its input (LayerDrop skips a residual block, i.e. the identity;
    transformers 4.x reported it the same way), so 'last4' always averages the outputs of the same last
    four layers, and 'last' is always the last layer's output (the model's last_hidden_state, which
    under LayerDrop is the last layer's output in the same sense).
    """

    def __init__(self, encoder: nn.Module, n_classes: int, pooling: str = "last"):
        super().__init__()
        if pooling not in ("last", "last4"):
            raise ValueError(f"unknown pooling '{pooling}' (use 'last' or 'last4')")
        self.encoder, self.pooling = encoder, pooling
        self.inputs = speech_inputs(encoder)
        self.head = nn.Linear(encoder.config.hidden_size, n_classes)

    def layer_states(self, waves: torch.Tensor, attention_mask: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(last_hidden_state, states) of the encoder: see `layer_states`."""
        return layer_states(self.encoder, waves, attention_mask)

    def embed(self, waves: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.pooling == "last":
            frames = self.encoder(waves, attention_mask=attention_mask).last_hidden_state
        else:
            frames = torch.stack(self.layer_states(waves, attention_mask)[1][-4:]).mean(dim=0)
        if attention_mask is None:
            return frames.mean(dim=1)
        keep = self.encoder._get_feature_vector_attention_mask(frames.shape[1], attention_mask)
        keep = keep.unsqueeze(-1).to(frames.dtype)
        return (frames * keep).sum(dim=1) / keep.sum(dim=1)

    def forward(self, waves: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.embed(waves, attention_mask))


def layer_states(encoder: nn.Module, waves: torch.Tensor, attention_mask: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(last_hidden_state, states): states[0] is the input of the first transformer layer, states[i]
    the output of layer i (its input when LayerDrop skipped it), num_hidden_layers + 1 of them, the
    same indexing as transformers' `hidden_states` without LayerDrop; the last one is last_hidden_state.
    (A function of the encoder alone, so that frozen-encoder feature extraction shares it.)"""
    stack = encoder.encoder
    n_layers = len(stack.layers)
    outputs: list[torch.Tensor | None] = [None] * (n_layers + 1)

    def record(i):
        def hook(module, args, output):
            outputs[i] = output[0] if isinstance(output, tuple) else output  # WavLM: (states, position bias)
        return hook

    # stack.dropout is applied to the positional-embedded features just before the first layer, in the
    # encoders of every supported family (HuBERT, wav2vec2, WavLM, data2vec-audio) and their
    # stable-layer-norm variants alike: its output is states[0]
    handles = [stack.dropout.register_forward_hook(record(0))]
    handles += [layer.register_forward_hook(record(i + 1)) for i, layer in enumerate(stack.layers)]
    try:
        last = encoder(waves, attention_mask=attention_mask).last_hidden_state
    finally:
        for h in handles:
            h.remove()
    if outputs[0] is None:
        raise RuntimeError("the encoder's layer input was not recorded (an unsupported encoder layout)")
    for i in range(1, n_layers + 1):
        if outputs[i] is None:  # skipped by LayerDrop: the identity
            outputs[i] = outputs[i - 1]
    outputs[-1] = last  # the stable-layer-norm variant normalises after the last layer
    return last, outputs


def lr_lambda(schedule: str, total_steps: int, warmup_ratio: float):
    warmup = math.ceil(warmup_ratio * total_steps) if warmup_ratio > 0 else 0

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if schedule == "linear":
            return max(0.0, (total_steps - step) / max(1, total_steps - warmup))
        return 1.0

    return factor


def make_batch(waves: list[np.ndarray], crop: int | None, generator: torch.Generator,
               inputs: SpeechInputs = SpeechInputs()) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A training batch (values, attention_mask): random crops, each normalised as the encoder expects.

    Where padding changes the encoder's output (a group-normalised feature encoder such as HuBERT base's,
    which takes no attention mask), all crops have one common length, min(crop, shortest clip in the
    batch): no padding at all (batch size 1 + no crop = whole utterances), and the mask is None. Where
    `inputs.padded_batches`, each clip keeps min(crop, its own length) and the batch is padded to the
    longest with an attention mask.
    """
    lengths = [w.size for w in waves]
    if not inputs.padded_batches:
        lengths = [min(lengths)] * len(waves)
    if crop:
        lengths = [min(n, crop) for n in lengths]
    out = []
    for w, length in zip(waves, lengths):
        start = int(torch.randint(0, w.size - length + 1, (1,), generator=generator))
        out.append(w[start:start + length])
    return inputs.pad(out)


def fine_tune(model: Classifier, waves: list[np.ndarray], labels: np.ndarray, cfg: dict, *, seed: int,
              device: torch.device, sample_rate: int = 16000, log=print, checkpoint=None) -> dict:
    """Fine-tune the whole model (feature encoder included) with AdamW; return a loss summary.

    With a `cltm.checkpoints.Checkpoint`, the state is saved when due and a saved state is resumed,
    giving the same result as an uninterrupted run. Data order and crops come from a generator of
    `seed`; dropout, LayerDrop and time masking from the global ones, which a run lends its own for the
    time of the call (`cltm.rng.RunGenerators.active()`, as `cltm.tasks.run_one` does)."""
    n = len(waves)
    bs = cfg["batch_size"]
    steps_per_epoch = math.ceil(n / bs)
    total = cfg["epochs"] * steps_per_epoch
    crop = int(cfg["crop_seconds"] * sample_rate) if cfg.get("crop_seconds") else None
    if cfg.get("freeze_feature_encoder"):
        # the CNN waveform encoder keeps its (pretrained) weights; autograd then skips it entirely
        freeze_feature_encoder(model.encoder)
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lr_lambda(cfg["schedule"], total, cfg["warmup_ratio"]))
    generator = torch.Generator().manual_seed(seed)
    targets = torch.as_tensor(labels, dtype=torch.long)
    if device.type == "cpu":
        # oneDNN's conv1d backward is several times slower than PyTorch's own kernels for the
        # narrow convolutions of HuBERT's feature encoder on CPU; results are the same up to rounding
        torch.backends.mkldnn.enabled = False
    model.to(device).train()
    losses, epoch_means, step, t0 = [], [], 0, time.perf_counter()
    report_every = max(1, total // 10)
    start_epoch, start_batch, order, epoch_losses = 0, 0, None, []
    resumed = checkpoint.load() if checkpoint else None
    if resumed:
        from cltm.checkpoints import set_rng_state

        model.load_state_dict(resumed["model"])
        optimiser.load_state_dict(resumed["optimiser"])
        scheduler.load_state_dict(resumed["scheduler"])
        generator.set_state(resumed["generator"])
        set_rng_state(resumed["rng"])
        losses, epoch_means, step = resumed["losses"], resumed["epoch_means"], resumed["step"]
        start_epoch, start_batch, order, epoch_losses = (resumed["epoch"], resumed["batch"], resumed["order"],
                                                         resumed["epoch_losses"])
        log(f"resumed from checkpoint at step {step}/{total}")
    for epoch in range(start_epoch, cfg["epochs"]):
        if epoch > start_epoch or order is None:
            order, epoch_losses = torch.randperm(n, generator=generator).tolist(), []
        for b in range(start_batch if epoch == start_epoch else 0, steps_per_epoch):
            idx = order[b * bs:(b + 1) * bs]
            x, mask = make_batch([waves[i] for i in idx], crop, generator, model.inputs)
            loss = F.cross_entropy(model(x.to(device), _to(mask, device)), targets[idx].to(device))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.get("grad_clip"):
                torch.nn.utils.clip_grad_norm_(params, cfg["grad_clip"])
            optimiser.step()
            scheduler.step()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(f"training loss became {value} at step {step + 1}/{total}; lower the learning rate")
            losses.append(value)
            epoch_losses.append(value)
            step += 1
            if step % report_every == 0 or step == total:
                log(f"epoch {epoch + 1}/{cfg['epochs']} step {step}/{total} loss {value:.4f} "
                    f"({time.perf_counter() - t0:.1f} s)")
            if checkpoint and step < total and checkpoint.due():
                from cltm.checkpoints import rng_state

                checkpoint.save({"model": model.state_dict(), "optimiser": optimiser.state_dict(),
                                 "scheduler": scheduler.state_dict(), "generator": generator.get_state(),
                                 "rng": rng_state(), "losses": losses, "epoch_means": epoch_means,
                                 "step": step, "epoch": epoch, "batch": b + 1, "order": order,
                                 "epoch_losses": epoch_losses})
        epoch_means.append(float(np.mean(epoch_losses)))
    return {"steps": total, "first": losses[0], "last": losses[-1], "epoch_means": epoch_means}


def _to(mask: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if mask is None else mask.to(device)


EVAL_BATCH = 8  # clips per evaluation batch where the encoder pads exactly


def _eval_batches(waves: list[np.ndarray], inputs: SpeechInputs, batch: int = EVAL_BATCH):
    """(indices, values, mask) over whole clips: one clip at a time, or, where padding leaves a clip's
    output unchanged, up to EVAL_BATCH clips of similar length padded together (sorted by length)."""
    if not inputs.padded_batches:
        for i, w in enumerate(waves):
            yield [i], *inputs.pad([w])
        return
    order = sorted(range(len(waves)), key=lambda i: waves[i].size, reverse=True)
    for b in range(0, len(order), batch):
        idx = order[b:b + batch]
        yield idx, *inputs.pad([waves[i] for i in idx])


def _per_clip(model: Classifier, waves: list[np.ndarray], device: torch.device, fn) -> torch.Tensor:
    model.to(device).eval()
    rows: list[torch.Tensor | None] = [None] * len(waves)
    for idx, x, mask in _eval_batches(waves, model.inputs):
        for i, row in zip(idx, fn(x.to(device), _to(mask, device)).cpu()):
            rows[i] = row
    return torch.stack(rows)


@torch.inference_mode()
def embed_clips(model: Classifier, waves: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """Whole clips (no crop), independent of batch composition: one at a time, or padded in batches where
    padding does not change the encoder's output (the mask keeps it out; equal to the clip alone up to
    float rounding, 1e-5 in the tests)."""
    return _per_clip(model, waves, device, model.embed)


@torch.inference_mode()
def predict_proba(model: Classifier, waves: list[np.ndarray], device: torch.device) -> np.ndarray:
    """Class probabilities per whole clip, batched as embed_clips."""
    return torch.softmax(_per_clip(model, waves, device, model), dim=-1).numpy()
