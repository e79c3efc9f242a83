"""One lean fine-tuning loop shared by every task: encoder + pooling + linear head, cross-entropy."""

from __future__ import annotations

import contextlib
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cltm.config import PRECISIONS
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


SYNC_EVERY = 25  # steps between reads of the loss back to the host (each read waits for the device)


def precision_of(cfg: dict) -> str:
    """A training section's precision; configs without the key are fp32 (the paper protocol), and the default
    is never written into a config, so the settings digest of an existing task does not change."""
    precision = cfg.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown training precision '{precision}' (config key tasks.<task>.training.precision: "
                         f"use {', '.join(PRECISIONS)})")
    return precision


@contextlib.contextmanager
def autocast(device: torch.device, precision: str = "fp32"):
    """The numeric precision of a forward pass and the loss (backward follows the forward's dtypes); used
    inside `matmul_precision`, which covers the backward pass too.

    fp32: PyTorch's defaults (float32 matrix products; on CUDA, cuDNN's convolutions may use TF32, as
    PyTorch allows by default). tf32: matrix products and convolutions in TF32 on CUDA (Ampere or newer),
    set by `matmul_precision`; on CPU the same as fp32. bf16: autocast to bfloat16 (weights, gradients and
    optimiser state stay float32; bf16's exponent range is float32's, so no loss scaling is needed); works
    on CPU too, but slower there without bf16 matrix units.
    """
    if precision == "bf16":
        with torch.autocast(device.type, dtype=torch.bfloat16):
            yield
    else:
        yield


@contextlib.contextmanager
def matmul_precision(device: torch.device, precision: str = "fp32"):
    """TF32 matrix products and convolutions for the time of a training or an evaluation (forward and
    backward) when `precision` is tf32 on CUDA; the process's settings are restored afterwards."""
    if precision != "tf32" or device.type != "cuda":
        yield
        return
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def to_device(x: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    """A host tensor on `device`; to CUDA through pinned memory without blocking the host, so the copy
    overlaps the work already queued on the device."""
    if x is None:
        return None
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


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
              device: torch.device, sample_rate: int = 16000, log=print, checkpoint=None,
              sync_every: int = SYNC_EVERY) -> dict:
    """Fine-tune the whole model (feature encoder included) with AdamW; return a loss summary.

    Forward and loss run in the section's `precision` (`autocast`). The step's loss stays on the device
    and is read back to the host every `sync_every` steps (and at every log line, checkpoint and epoch
    end), so the host queues the next steps instead of waiting for each: the summary (first, last, epoch
    means) and the non-finite-loss error (naming the step) are the same values as with a read every
    step; a non-finite loss is only noticed up to `sync_every - 1` steps later.

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
    precision = precision_of(cfg)
    if device.type == "cpu":
        # oneDNN's conv1d backward is several times slower than PyTorch's own kernels for the
        # narrow convolutions of HuBERT's feature encoder on CPU; results are the same up to rounding.
        # bf16 autocast needs oneDNN (without it, 18x slower than fp32)
        torch.backends.mkldnn.enabled = precision == "bf16"
    model.to(device).train()
    losses, epoch_means, step, t0 = [], [], 0, time.perf_counter()
    report_every = max(1, total // 10)
    sync_every = max(1, int(sync_every))
    pending: list[torch.Tensor] = []  # the losses of steps not yet read back (on the device)

    def read_back() -> None:
        """The pending losses to the host (one wait for the device), checked, appended in step order."""
        if not pending:
            return
        values = torch.stack(pending).cpu().tolist()
        first_step = step - len(values) + 1
        pending.clear()
        for i, value in enumerate(values):
            if not math.isfinite(value):
                raise FloatingPointError(f"training loss became {value} at step {first_step + i}/{total}; "
                                         "lower the learning rate")
            losses.append(value)
            epoch_losses.append(value)
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
    with matmul_precision(device, precision):
        for epoch in range(start_epoch, cfg["epochs"]):
            if epoch > start_epoch or order is None:
                order, epoch_losses = torch.randperm(n, generator=generator).tolist(), []
            for b in range(start_batch if epoch == start_epoch else 0, steps_per_epoch):
                idx = order[b * bs:(b + 1) * bs]
                x, mask = make_batch([waves[i] for i in idx], crop, generator, model.inputs)
                x, mask, y = to_device(x, device), to_device(mask, device), to_device(targets[idx], device)
                with autocast(device, precision):
                    loss = F.cross_entropy(model(x, mask), y)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.get("grad_clip"):
                    torch.nn.utils.clip_grad_norm_(params, cfg["grad_clip"])
                optimiser.step()
                scheduler.step()
                pending.append(loss.detach().float())
                step += 1
                reporting = step % report_every == 0 or step == total
                saving = bool(checkpoint) and step < total and checkpoint.due()
                if reporting or saving or len(pending) >= sync_every:
                    read_back()
                if reporting:
                    log(f"epoch {epoch + 1}/{cfg['epochs']} step {step}/{total} loss {losses[-1]:.4f} "
                        f"({time.perf_counter() - t0:.1f} s)")
                if saving:
                    from cltm.checkpoints import rng_state

                    checkpoint.save({"model": model.state_dict(), "optimiser": optimiser.state_dict(),
                                     "scheduler": scheduler.state_dict(), "generator": generator.get_state(),
                                     "rng": rng_state(), "losses": losses, "epoch_means": epoch_means,
                                     "step": step, "epoch": epoch, "batch": b + 1, "order": order,
                                     "epoch_losses": epoch_losses})
            read_back()
            epoch_means.append(float(np.mean(epoch_losses)))
    return {"steps": total, "first": losses[0], "last": losses[-1], "epoch_means": epoch_means}


EVAL_BATCH = 8  # clips per evaluation batch


def _eval_batches(waves: list[np.ndarray], inputs: SpeechInputs, equal_lengths: bool = False,
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


def _per_clip(model: Classifier, waves: list[np.ndarray], device: torch.device, fn, precision: str) -> torch.Tensor:
    model.to(device).eval()
    rows: list[torch.Tensor | None] = [None] * len(waves)
    # fp32, the paper protocol, keeps evaluation bit for bit what it was (a batched linear layer rounds
    # differently from the clip alone, ~1e-8); the faster precisions, already not bit-exact, batch more
    for idx, x, mask in _eval_batches(waves, model.inputs, equal_lengths=precision != "fp32"):
        with matmul_precision(device, precision), autocast(device, precision):
            out = fn(to_device(x, device), to_device(mask, device))
        for i, row in zip(idx, out.float().cpu()):
            rows[i] = row
    return torch.stack(rows)


@torch.inference_mode()
def embed_clips(model: Classifier, waves: list[np.ndarray], device: torch.device, precision: str = "fp32") -> torch.Tensor:
    """Whole clips (no crop), independent of batch composition, in the training's `precision`: in batches
    where that does not change a clip's output (clips padded with a mask where padding is exact; else, in
    tf32 and bf16, clips of equal length; equal to the clip alone up to float rounding, 1e-5 in the tests),
    one at a time otherwise."""
    return _per_clip(model, waves, device, model.embed, precision)


@torch.inference_mode()
def predict_proba(model: Classifier, waves: list[np.ndarray], device: torch.device, precision: str = "fp32") -> np.ndarray:
    """Class probabilities per whole clip, batched as embed_clips."""
    return torch.softmax(_per_clip(model, waves, device, model, precision), dim=-1).numpy()
