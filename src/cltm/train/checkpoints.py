"""Resumable training state of one run, so that a run stopped by SLURM (preemption, time limit,
scancel) continues where it was when it is run again, with the same result as an uninterrupted run.

The trainer saves the model, optimiser, schedule, data order and every random generator at a step
boundary, at most every `every_s` seconds, atomically. The file carries a key: the run's identity
(settings digest, task, target, condition, seed, training items). A file with another key (settings
changed since) is ignored and replaced. The file is removed once the run's result is written, so a
checkpoint never stands in for a result: only the run JSON does.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from pathlib import Path

import numpy as np
import torch

from cltm.io import atomic_path

FORMAT = 1


def run_key(**identity) -> str:
    """Digest of what makes a run: a checkpoint is resumed only by the same run."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def rng_state() -> dict:
    """torch (CPU and CUDA), numpy and Python generators, as tensors and plain values (weights_only-safe).

    Saved and restored inside a run's `cltm.train.rng.RunGenerators.active()`, where the global generators hold
    that run's states: a resumed run goes on with its own draws, not the process's."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Checkpoint:
    """One run's checkpoint file: `load()` on start, `save(state)` when `due()`, `remove()` at the end."""

    def __init__(self, path: str | Path, key: str, every_s: float = 600.0, log=print):
        self.path, self.key, self.every_s, self.log = Path(path), key, every_s, log
        self._last = time.monotonic()
        self.resumed = False  # whether load() gave a saved state (the run's record says so)

    def due(self) -> bool:
        return self.every_s > 0 and time.monotonic() - self._last >= self.every_s

    def load(self) -> dict | None:
        if not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - an unreadable checkpoint is only a lost shortcut
            self.log(f"checkpoint {self.path} unreadable ({err}); starting from scratch")
            return None
        if state.get("format") != FORMAT or state.get("key") != self.key:
            self.log(f"checkpoint {self.path} belongs to other settings; starting from scratch")
            return None
        self.resumed = True
        return state

    def save(self, state: dict) -> None:
        t0 = time.monotonic()
        with atomic_path(self.path) as tmp:
            torch.save({"format": FORMAT, "key": self.key, **state}, tmp)
        self._last = time.monotonic()
        self.log(f"checkpoint saved at step {state['step']} ({self._last - t0:.1f} s): {self.path}")

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        for leftover in self.path.parent.glob(f".{self.path.name}.*.part"):  # from a save that was killed
            leftover.unlink(missing_ok=True)
