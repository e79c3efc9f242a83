"""One lean fine-tuning loop shared by every task: AdamW, a schedule, random crops, cross-entropy.

The loop's stages in order: data order, crops and time masks from the run's generator, forward and loss in the
section's precision, backward, clip, step; the loss read back to the host every `SYNC_EVERY` steps (the
only host syncs of a step), a checkpoint when due. On CUDA the optimiser is AdamW's fused kernel (one
launch per step instead of a few per parameter); on the CPU the plain AdamW, so CPU results stay what they
were. `training.deterministic` trains with deterministic kernels (`cltm.model.device.deterministic_kernels`).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from cltm.config.validate import whole_clip_problem
from cltm.errors import ConfigError
from cltm.model.device import deterministic_kernels, to_device
from cltm.model.encoder import SpeechInputs, freeze_feature_encoder
from cltm.model.heads import Classifier
from cltm.model.masking import draw_time_masks, sample_lengths, time_masked
from cltm.model.precision import autocast, matmul_precision, precision_of
from cltm.train.checkpoints import rng_state, set_rng_state

SYNC_EVERY = 25  # steps between reads of the loss back to the host (each read waits for the device)


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
    batch): no padding at all (batch size 1 + no crop = whole utterances), and the mask is None. Without a
    crop (whole utterances) clips of different lengths are refused (ValueError; `fine_tune` stops before
    training: `cltm.config.validate.whole_clip_problem`): cutting them to the shortest would throw audio
    away unseen. Where `inputs.padded_batches`, each clip keeps min(crop, its own length) and the batch is
    padded to the longest with an attention mask.
    """
    lengths = [w.size for w in waves]
    if not inputs.padded_batches:
        if not crop and len(set(lengths)) > 1:
            raise ValueError(f"whole clips of {len(set(lengths))} different lengths in one batch, and this encoder "
                             "takes no attention mask: each would be cut to the shortest; use batch_size 1 or a "
                             "crop_seconds")
        lengths = [min(lengths)] * len(waves)
    if crop:
        lengths = [min(n, crop) for n in lengths]
    out = []
    for w, length in zip(waves, lengths):
        start = int(torch.randint(0, w.size - length + 1, (1,), generator=generator))
        out.append(w[start:start + length])
    return inputs.pad(out)


def make_optimiser(params, cfg: dict, device: torch.device) -> torch.optim.Optimizer:
    """AdamW over `params` (already on `device`): on CUDA its fused kernel, elsewhere the plain one (the
    CPU's numbers stay what they were)."""
    if device.type == "cuda":
        return torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"], fused=True)
    return torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])


def fine_tune(model: Classifier, waves: list[np.ndarray], labels: np.ndarray, cfg: dict, *, seed: int,
              device: torch.device, sample_rate: int = 16000, log=print, checkpoint=None,
              sync_every: int = SYNC_EVERY, task_name: str = "<task>") -> dict:
    """Fine-tune the whole model (feature encoder included) with AdamW; return a loss summary.

    Forward and loss run in the section's `precision` (`autocast`). The step's loss stays on the device
    and is read back to the host every `sync_every` steps (and at every log line, checkpoint and epoch
    end), so the host queues the next steps instead of waiting for each: the summary (first, last, epoch
    means) and the non-finite-loss error (naming the step) are the same values as with a read every
    step; a non-finite loss is only noticed up to `sync_every - 1` steps later.

    With a `cltm.train.checkpoints.Checkpoint`, the state is saved when due and a saved state is resumed,
    giving the same result as an uninterrupted run. Data order, crops and time masks (`cltm.model.masking`:
    transformers' distribution, applied without a host sync) come from a generator of `seed`; dropout and
    LayerDrop from the global ones, which a run lends its own for the time of the call
    (`cltm.train.rng.RunGenerators.active()`, as `cltm.train.finetune.finetune_run` does).

    Stops before training (ConfigError naming `tasks.<task_name>.training.batch_size` and `crop_seconds`)
    where whole-clip batches would cut clips (`cltm.config.validate.whole_clip_problem`). A resumed
    optimiser's state is cast to its parameters' device and dtype by `Optimizer.load_state_dict` (the
    model is on `device` by then)."""
    n = len(waves)
    bs = cfg["batch_size"]
    steps_per_epoch = math.ceil(n / bs)
    total = cfg["epochs"] * steps_per_epoch
    crop = int(cfg["crop_seconds"] * sample_rate) if cfg.get("crop_seconds") else None
    problem = whole_clip_problem(cfg, model.inputs.padded_batches, task_name)
    if problem:
        raise ConfigError(problem)
    if cfg.get("freeze_feature_encoder"):
        # the CNN waveform encoder keeps its (pretrained) weights; autograd then skips it entirely
        freeze_feature_encoder(model.encoder)
    model.to(device).train()  # before the optimiser: the fused kernel wants its parameters on the device
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = make_optimiser(params, cfg, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lr_lambda(cfg["schedule"], total, cfg["warmup_ratio"]))
    generator = torch.Generator().manual_seed(seed)
    targets = torch.as_tensor(labels, dtype=torch.long)
    precision = precision_of(cfg)
    if device.type == "cpu":
        # oneDNN's conv1d backward is several times slower than PyTorch's own kernels for the
        # narrow convolutions of HuBERT's feature encoder on CPU; results are the same up to rounding.
        # bf16 autocast needs oneDNN (without it, 18x slower than fp32)
        torch.backends.mkldnn.enabled = precision == "bf16"
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
        model.load_state_dict(resumed["model"])
        optimiser.load_state_dict(resumed["optimiser"])
        scheduler.load_state_dict(resumed["scheduler"])
        generator.set_state(resumed["generator"])
        set_rng_state(resumed["rng"])
        losses, epoch_means, step = resumed["losses"], resumed["epoch_means"], resumed["step"]
        start_epoch, start_batch, order, epoch_losses = (resumed["epoch"], resumed["batch"], resumed["order"],
                                                         resumed["epoch_losses"])
        log(f"resumed from checkpoint at step {step}/{total}")
    with matmul_precision(device, precision), deterministic_kernels(bool(cfg.get("deterministic")), device):
        for epoch in range(start_epoch, cfg["epochs"]):
            if epoch > start_epoch or order is None:
                order, epoch_losses = torch.randperm(n, generator=generator).tolist(), []
            for b in range(start_batch if epoch == start_epoch else 0, steps_per_epoch):
                idx = order[b * bs:(b + 1) * bs]
                x, mask = make_batch([waves[i] for i in idx], crop, generator, model.inputs)
                # time masks drawn here on the host, applied on the device by torch.where (no host sync)
                spans = draw_time_masks(model.encoder.config, sample_lengths(x, mask), generator)
                x, mask, y = to_device(x, device), to_device(mask, device), to_device(targets[idx], device)
                with autocast(device, precision), time_masked(model.encoder, to_device(spans, device)):
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
                    checkpoint.save({"model": model.state_dict(), "optimiser": optimiser.state_dict(),
                                     "scheduler": scheduler.state_dict(), "generator": generator.get_state(),
                                     "rng": rng_state(), "losses": losses, "epoch_means": epoch_means,
                                     "step": step, "epoch": epoch, "batch": b + 1, "order": order,
                                     "epoch_losses": epoch_losses})
            read_back()
            epoch_means.append(float(np.mean(epoch_losses)))
    return {"steps": total, "first": losses[0], "last": losses[-1], "epoch_means": epoch_means}
