"""Training draws per run seed (`data.resample: per_seed`): a task's selection of a language may hold, under
`draws`, each run seed's own training subsets (`single`, `extra`), drawn from the same pool by the same
rules; the test set and the trials are the data seed's, shared by every draw. Standard library only: the
job's client keys kept runs on a run's own draw (`cltm.grid.kept`) without pandas."""

from __future__ import annotations

from cltm.errors import CltmError

RESAMPLE = ("none", "per_seed")  # data.resample


def draw_seed(data_seed: int, seed: int) -> str:
    """The selection key of run seed `seed`'s own training draw (`data.resample: per_seed`): keyed orders
    take it as their seed, so each run seed has its draw and the data seed's draw stays as it is."""
    return f"{data_seed}:draw{seed}"


def seed_draw(selection: dict, seed: int) -> dict:
    """A task's selection of one language as run seed `seed` reads it: with `data.resample: per_seed` its
    training subsets (`single`, `extra`) are that seed's own draw; the test set and trials are the same for
    every seed. Unchanged without draws."""
    draws = selection.get("draws")
    if not draws:
        return selection
    if str(seed) not in draws:
        raise CltmError(f"language '{selection.get('language')}', task {selection.get('task')}: no training draw "
                        f"for seed {seed} (draws: {', '.join(sorted(draws))}); the seeds changed since the "
                        "selection was made: rerun the workflow, which redoes it")
    return {**{k: v for k, v in selection.items() if k != "draws"}, **draws[str(seed)], "draw": int(seed)}


def training_clips(selection: dict) -> set[str]:
    """Every training clip of a task's selection, over the data seed's subsets and every seed's draw."""
    parts = [selection] + list((selection.get("draws") or {}).values())
    return {u for part in parts for u in part["single"] + part["extra"]}
