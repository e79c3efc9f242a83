"""The random generators of one run, so that many runs in one process each draw as if alone.

A run draws from two kinds of generators:

* its own, passed explicitly: the data order, the crops and the time masks (`torch.Generator` seeded by
  the run's seed, made in `cltm.train.loop.fine_tune` and saved in its checkpoints; the time masks are
  drawn by `cltm.model.masking`, not by transformers, since method version 2);
* the process-global ones, used by code that takes no generator: the head's initial weights (`nn.Linear`
  draws from torch's CPU generator), dropout (torch's generator of the device: CPU, or the CUDA
  device's), LayerDrop (`torch.rand([])`: the CPU generator, on any device) and, where a user sets
  `mask_feature_prob`, transformers' feature masking (`_compute_mask_indices` draws from numpy's global
  `np.random`); Python's `random` too, for any library that uses it.

`RunGenerators(seed, device)` owns a run's states of all the global ones. Inside `with gens.active():`
the globals hold the run's states; on leaving, the states reached are saved back into the run and the
process's previous states are restored. A run therefore never sees another run's draws, whatever ran
before it, between two of its blocks (steps of several runs interleaved on one GPU) or after it, and
the process's own generators are left as they were.

Their first states are those of `torch.manual_seed(seed)`, `np.random.seed(seed)` and `random.seed(seed)`,
which runs used before, so a run's result for a given seed is unchanged. Not thread-safe: the globals
are shared by the threads of a process, so runs interleave within one thread.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch


def _cuda_index(device: torch.device | str | None) -> int | None:
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type != "cuda":
        return None
    return device.index if device.index is not None else torch.cuda.current_device()


def global_state(cuda: int | None = None) -> dict:
    """The process-global generators' states (CUDA: of device `cuda` only, when given)."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if cuda is not None:
        state["cuda"] = torch.cuda.get_rng_state(cuda)
    return state


def set_global_state(state: dict, cuda: int | None = None) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if cuda is not None and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], cuda)


def seeded_state(seed: int, cuda: int | None = None) -> dict:
    """The states that seeding every global generator with `seed` gives, computed without touching them."""
    state = {"torch": torch.Generator().manual_seed(seed).get_state(),
             "numpy": np.random.RandomState(seed % 2**32).get_state(),
             "python": random.Random(seed).getstate()}
    if cuda is not None:
        state["cuda"] = torch.Generator(f"cuda:{cuda}").manual_seed(seed).get_state()
    return state


class RunGenerators:
    """One run's states of the process-global generators; `active()` lends them the run's states."""

    def __init__(self, seed: int, device: torch.device | str | None = None):
        self.seed, self.device = int(seed), torch.device(device) if device is not None else torch.device("cpu")
        self._state: dict | None = None  # made on first activation (CUDA's needs the device initialised)
        self._depth = 0

    @contextmanager
    def active(self) -> Iterator[RunGenerators]:
        """Within the block, the global generators are this run's; re-entrant (an inner block is a no-op)."""
        if self._depth:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        cuda = _cuda_index(self.device)
        if self._state is None:
            self._state = seeded_state(self.seed, cuda)
        outer = global_state(cuda)
        set_global_state(self._state, cuda)
        self._depth = 1
        try:
            yield self
        finally:
            self._depth = 0
            self._state = global_state(cuda)
            set_global_state(outer, cuda)
