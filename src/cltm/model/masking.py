"""Time masking of training (SpecAugment), drawn on the host from the run's generator and applied on the
device without a host sync.

transformers' own time masking (`_mask_hidden_states` of HuBERT, wav2vec2, WavLM and data2vec-audio) draws
its spans in numpy (`_compute_mask_indices`, from numpy's global generator), copies them to the device with a
blocking `torch.tensor(..., device=...)` and writes them through a boolean index (a `nonzero`): two host
syncs in every training forward on CUDA. Here `draw_time_masks` draws spans of the same distribution from a
`torch.Generator` (the training loop's own, saved in its checkpoints), `cltm.model.device.to_device` copies
them without blocking, and `time_masked` applies them with `torch.where` where transformers would, right
after the feature projection, while the model draws none of its own.

The distribution is transformers' (tests/test_masking.py compares them over many draws): one epsilon per
batch for probabilistic rounding; each sequence gets int(mask_time_prob * length / mask_time_length +
epsilon) spans, at least `mask_time_min_masks`, capped as transformers caps them; span starts are distinct
and uniform over the positions where a whole span fits; spans may overlap; a sequence that gets no span while
others do has its last (padded) frame masked, as transformers' padding index does. `length` is each clip's own
number of frames for wav2vec2, WavLM and data2vec-audio, which pass the attention mask to their masking, and
the padded batch's for HuBERT, which does not (so HuBERT's spans may fall on padded frames, as in
transformers).

Feature-axis masking (`mask_feature_prob`) is left to transformers: it is 0 in every shipped config (the
demo's, tiny-hubert-synth's, mHuBERT-147's as released), and where a user sets it, transformers applies it
after these time masks, in its own order.
"""

from __future__ import annotations

import contextlib

import torch

# model_type whose forward passes the attention mask to its masking (HuBERT's does not: transformers 5.x)
LENGTHS_FROM_ATTENTION_MASK = ("wav2vec2", "wavlm", "data2vec-audio")


def frame_lengths(config, n_samples: list[int]) -> list[int]:
    """Frames the feature encoder makes of `n_samples` samples (transformers' `_get_feat_extract_output_lengths`
    without an adapter, which `cltm.model.encoder` refuses)."""
    out = []
    for n in n_samples:
        for kernel, stride in zip(config.conv_kernel, config.conv_stride):
            n = (n - kernel) // stride + 1
        out.append(n)
    return out


def sample_lengths(values: torch.Tensor, attention_mask: torch.Tensor | None) -> list[int]:
    """The samples of each clip of a host batch (values, attention mask) as `SpeechInputs.pad` makes it."""
    if attention_mask is None:
        return [values.shape[1]] * values.shape[0]
    return attention_mask.sum(dim=1).tolist()  # a host tensor: no device involved


def span_mask(batch: int, frames: int, prob: float, span: int, lengths: list[int], min_masks: int,
              generator: torch.Generator) -> torch.Tensor:
    """[batch, frames] bool: transformers' `_compute_mask_indices((batch, frames), prob, span, min_masks=...)`
    with sequences of `lengths` frames, drawn from `generator` on the host."""
    if span < 1:
        raise ValueError("`mask_length` has to be bigger than 0.")
    if span > frames:
        raise ValueError(f"`mask_length` has to be smaller than `sequence_length`, but got `mask_length`: {span}"
                         f" and `sequence_length`: {frames}`")
    epsilon = float(torch.rand((), generator=generator, dtype=torch.float64))  # one for the batch, as theirs

    def spans_of(length: int) -> int:
        n = max(int(prob * length / span + epsilon), min_masks)
        if n * span > frames:
            n = frames // span
        if length - (span - 1) < n:
            n = max(length - (span - 1), 0)
        return n

    mask = torch.zeros(batch, frames, dtype=torch.bool)
    if spans_of(frames) == 0:
        return mask
    offsets = torch.arange(span)
    for row, length in enumerate(lengths):
        n = spans_of(length)
        if n == 0:
            mask[row, frames - 1] = True  # transformers pads a row without spans with its last frame's index
            continue
        starts = torch.randperm(length - span + 1, generator=generator)[:n]  # distinct, uniform: np.random.choice
        mask[row, (starts[:, None] + offsets).flatten().clamp(max=frames - 1)] = True
    return mask


def draw_time_masks(config, n_samples: list[int], generator: torch.Generator) -> torch.Tensor | None:
    """The time masks [batch, frames] (bool, on the host) of one training batch whose clips have `n_samples`
    samples (padded to the longest), as the encoder's `config` asks; None where it masks nothing
    (`mask_time_prob` 0 or `apply_spec_augment` false: then nothing is drawn from `generator`)."""
    if not getattr(config, "apply_spec_augment", True) or not config.mask_time_prob > 0:
        return None
    lengths = frame_lengths(config, n_samples)
    frames = max(lengths)
    if config.model_type not in LENGTHS_FROM_ATTENTION_MASK:
        lengths = [frames] * len(lengths)
    return span_mask(len(lengths), frames, config.mask_time_prob, config.mask_time_length, lengths,
                     config.mask_time_min_masks, generator)


@contextlib.contextmanager
def time_masked(encoder, masks: torch.Tensor | None):
    """Within the block, the encoder's forward replaces the frames of `masks` ([batch, frames] bool, on the
    encoder's device) with its learned mask embedding (`masked_spec_embed`) by `torch.where`, right after the
    feature projection where transformers masks, and draws no time mask of its own (its `mask_time_prob` reads
    0 for the time of the block). None: the block changes nothing."""
    if masks is None:
        yield
        return
    embed, keep = encoder.masked_spec_embed, masks[..., None]

    def hook(module, args, output):
        # wav2vec2, WavLM and data2vec-audio project to (hidden_states, normalised features); HuBERT to hidden_states
        hidden = output[0] if isinstance(output, tuple) else output
        hidden = torch.where(keep, embed.to(hidden.dtype), hidden)
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    config = encoder.config
    prob = config.mask_time_prob
    handle = encoder.feature_projection.register_forward_hook(hook)
    config.mask_time_prob = 0.0
    try:
        yield
    finally:
        config.mask_time_prob = prob
        handle.remove()
