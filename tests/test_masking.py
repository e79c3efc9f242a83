"""Time masks of training (cltm.model.masking): transformers' distribution, drawn from the run's generator,
applied without a boolean index; each family's model uses them and draws none of its own."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from transformers.models.hubert.modeling_hubert import _compute_mask_indices

from families import FAMILIES, family_model
from cltm.model.masking import (LENGTHS_FROM_ATTENTION_MASK, draw_time_masks, frame_lengths, span_mask,
                                time_masked)

DRAWS = 4000

# (frames, mask_time_prob, mask_time_length, mask_time_min_masks, lengths): HuBERT base on a 1 s crop;
# padded clips, one too short for any span (its padded last frame is masked); a dense mask whose spans
# overlap and hit transformers' caps
CASES = {
    "hubert-1s": (49, 0.05, 10, 2, [49, 49]),
    "padded": (60, 0.3, 4, 2, [60, 45, 12, 3]),
    "dense": (30, 0.65, 5, 0, [30, 21]),
}


def _theirs(frames, prob, span, min_masks, lengths) -> np.ndarray:
    np.random.seed(0)
    mask = torch.zeros(len(lengths), frames, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    return np.stack([_compute_mask_indices((len(lengths), frames), prob, span, attention_mask=mask,
                                           min_masks=min_masks) for _ in range(DRAWS)])


def _ours(frames, prob, span, min_masks, lengths, sampler=span_mask) -> np.ndarray:
    g = torch.Generator().manual_seed(0)
    return np.stack([sampler(len(lengths), frames, prob, span, lengths, min_masks, g).numpy() for _ in range(DRAWS)])


def _moved(a: np.ndarray, b: np.ndarray) -> list[str]:
    """Where two samples of masks [draws, batch, frames] differ beyond sampling error (fixed seeds: no flakes):
    per-position masking frequency and span-start frequency (a masked frame after an unmasked one) within 5
    standard errors; the number of masked frames per sequence: mean within 5 standard errors, histograms
    within 0.05 total variation."""
    out = []

    def compare(name, x, y):
        p = (x + y) / 2
        se = np.sqrt(2 * p * (1 - p) / DRAWS) + 1e-3
        if np.any(np.abs(x - y) > 5 * se):
            out.append(f"{name}: largest difference {np.abs(x - y).max():.4f}")

    compare("masking frequency", a.mean(axis=0), b.mean(axis=0))

    def starts(m):
        s = m.copy()
        s[..., 1:] &= ~m[..., :-1]
        return s

    compare("span-start frequency", starts(a).mean(axis=0), starts(b).mean(axis=0))
    na, nb = a.sum(axis=2), b.sum(axis=2)  # [draws, batch]
    for row in range(a.shape[1]):
        se = np.sqrt((na[:, row].var() + nb[:, row].var()) / DRAWS) + 1e-3
        if abs(na[:, row].mean() - nb[:, row].mean()) > 5 * se:
            out.append(f"row {row}: mean masked frames {na[:, row].mean():.3f} vs {nb[:, row].mean():.3f}")
        top = int(max(na[:, row].max(), nb[:, row].max())) + 1
        tv = 0.5 * np.abs(np.bincount(na[:, row], minlength=top) - np.bincount(nb[:, row], minlength=top)).sum() / DRAWS
        if tv > 0.05:
            out.append(f"row {row}: masked-frame counts differ by total variation {tv:.3f}")
    return out


@pytest.mark.parametrize("case", CASES)
def test_the_masks_have_transformers_distribution(case):
    theirs, ours = _theirs(*CASES[case]), _ours(*CASES[case])
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype == bool
    assert not _moved(ours, theirs), _moved(ours, theirs)


def test_the_comparison_catches_a_sampler_that_differs():
    """A sampler that rounds the span count to nearest instead of transformers' random rounding, or one that
    ignores the clips' own lengths, fails the same comparison."""
    def rounded(batch, frames, prob, span, lengths, min_masks, g):
        out = torch.zeros(batch, frames, dtype=torch.bool)
        for row, n in enumerate(lengths):
            k = min(max(int(prob * n / span + 0.5), min_masks), max(n - span + 1, 0))
            for s in torch.randperm(n - span + 1, generator=g)[:k].tolist():
                out[row, s:s + span] = True
        return out

    def unpadded(batch, frames, prob, span, lengths, min_masks, g):
        return span_mask(batch, frames, prob, span, [frames] * batch, min_masks, g)

    theirs = _theirs(*CASES["padded"])
    assert _moved(_ours(*CASES["padded"], sampler=rounded), theirs)
    assert _moved(_ours(*CASES["padded"], sampler=unpadded), theirs)


def test_the_masks_are_the_run_generators_and_nothing_else():
    """Drawn from the generator given (the same state, the same masks), none from numpy's global one."""
    config = family_model("hubert").config
    before = np.random.get_state()[1].copy()
    a = draw_time_masks(config, [16000, 16000], torch.Generator().manual_seed(3))
    b = draw_time_masks(config, [16000, 16000], torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == (2, frame_lengths(config, [16000])[0]) and a.any()
    assert np.array_equal(np.random.get_state()[1], before)
    config.mask_time_prob = 0.0  # nothing masked: nothing drawn
    g = torch.Generator().manual_seed(3)
    state = g.get_state()
    assert draw_time_masks(config, [16000], g) is None and torch.equal(g.get_state(), state)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_takes_our_masks_and_draws_none(family):
    """In train mode (no dropout, no LayerDrop) the model's output with our masks applied by `time_masked` is
    the output transformers gives for the same masks passed as `mask_time_indices`; inside the block the
    model draws no mask of its own, and its config is restored after."""
    zero = dict(hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0,
                layerdrop=0.0, mask_time_prob=0.3, mask_time_length=3, mask_time_min_masks=1)
    encoder = family_model(family, **zero).train()
    x = torch.randn(2, 8000)
    masks = draw_time_masks(encoder.config, [8000, 8000], torch.Generator().manual_seed(0))
    assert masks.any() and not masks.all()
    module = importlib.import_module(type(encoder).__module__)
    calls = []
    original = module._compute_mask_indices
    module._compute_mask_indices = lambda *a, **k: calls.append(k) or original(*a, **k)
    try:
        with torch.no_grad():
            with time_masked(encoder, masks):
                ours = encoder(x).last_hidden_state
            assert not calls and encoder.config.mask_time_prob == 0.3
            theirs = encoder(x, mask_time_indices=masks).last_hidden_state
            assert torch.equal(ours, theirs)
            encoder(x)  # outside the block, transformers draws its own
            assert len(calls) == 1
            # which lengths its own draw uses: the clips' (attention mask) or the padded batch's
            encoder(x, attention_mask=torch.ones(2, 8000, dtype=torch.long))
            passes_lengths = calls[-1].get("attention_mask") is not None
    finally:
        module._compute_mask_indices = original
    assert passes_lengths is (encoder.config.model_type in LENGTHS_FROM_ATTENTION_MASK)


def test_masks_train_the_mask_embedding():
    """The mask embedding receives the gradient it gets from transformers' own assignment."""
    encoder = family_model("hubert", hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                           feat_proj_dropout=0.0, layerdrop=0.0, mask_time_prob=0.3, mask_time_length=3).train()
    x = torch.randn(1, 8000)
    masks = draw_time_masks(encoder.config, [8000], torch.Generator().manual_seed(0))
    with time_masked(encoder, masks):
        encoder(x).last_hidden_state.square().sum().backward()
    ours = encoder.masked_spec_embed.grad.clone()
    encoder.zero_grad()
    encoder(x, mask_time_indices=masks).last_hidden_state.square().sum().backward()
    torch.testing.assert_close(ours, encoder.masked_spec_embed.grad, rtol=1e-5, atol=1e-6)
    assert ours.abs().sum() > 0
