"""A run as data: who it is (task, target, condition, seed), what it reads and what it writes.

Running runs is `cltm.grid.execute.execute_runs(specs)`. Standard library only (the job's client builds
specs without torch).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from cltm.io import read_json
from cltm.paths import (
    AUDIO,
    DONOR_PREFIX,
    DUAL,
    ENCODER,
    RUN_CHECKPOINT,
    RUN_JSON,
    RUN_SCORES,
    SETTINGS,
    SINGLE,
    SUBSETS,
    donor_of,
    is_condition,
)


@dataclass(frozen=True)
class RunSpec:
    """One run: who it is (task, target, condition, seed), what it reads, what it writes.

    `subsets` and `audio` list the same languages in the same order: the target first, then the donor of
    a bilingual condition. Paths are as given (relative ones to the working directory of the process).
    """

    task: str
    target: str
    condition: str
    seed: int
    settings: str  # results/<task>/settings.json: hyper-parameters, digest, device
    encoder: str  # results/encoder/model.safetensors (its directory is loaded)
    subsets: tuple[str, ...]  # subset JSON per language
    audio: tuple[str, ...]  # prepared audio .npy per language (index .tsv beside it)
    run: str  # output: the run JSON, written last
    scores: str  # output: per-item scores TSV
    checkpoint: str | None = None  # resumable training state; None: not checkpointed
    threads: int = field(default=1, compare=False)  # torch CPU threads (not part of the run's identity)

    def __post_init__(self):
        object.__setattr__(self, "seed", int(self.seed))
        for name in ("settings", "encoder", "run", "scores", "checkpoint"):
            value = getattr(self, name)
            object.__setattr__(self, name, None if value is None else str(value))
        object.__setattr__(self, "subsets", tuple(str(p) for p in self.subsets))
        object.__setattr__(self, "audio", tuple(str(p) for p in self.audio))
        if not is_condition(self.condition):
            raise ValueError(f"unknown condition '{self.condition}' (use {SINGLE}, {DUAL} or {DONOR_PREFIX}<language>)")
        if len(self.subsets) != len(self.audio):
            raise ValueError("subsets and audio must list the same languages in the same order")
        if len(self.subsets) != len(self.languages):
            raise ValueError(f"condition '{self.condition}' of target {self.target} reads the languages "
                             f"{', '.join(self.languages)}; got {len(self.subsets)} subset file(s)")

    @property
    def languages(self) -> tuple[str, ...]:
        """The target, plus the donor of a bilingual condition (the order of `subsets` and `audio`)."""
        donor = donor_of(self.condition)
        return (self.target,) + ((donor,) if donor else ())

    @property
    def name(self) -> str:
        return f"{self.task} {self.target} {self.condition} seed {self.seed}"

    @classmethod
    def standard(cls, task: str, target: str, condition: str, seed: int, root: str | Path = ".",
                 checkpoint: bool = True, threads: int = 1) -> RunSpec:
        """The run with the workflow's paths under `root` (the workflow's working directory)."""
        root = Path(root)
        donor = donor_of(condition)
        langs = [target] + ([donor] if donor else [])
        ids = dict(task=task, target=target, condition=condition, seed=seed)
        return cls(
            **ids, settings=str(root / SETTINGS.format(task=task)), encoder=str(root / ENCODER),
            subsets=tuple(str(root / SUBSETS.format(task=task, lang=lang)) for lang in langs),
            audio=tuple(str(root / AUDIO.format(lang=lang)) for lang in langs),
            run=str(root / RUN_JSON.format(**ids)), scores=str(root / RUN_SCORES.format(**ids)),
            checkpoint=str(root / RUN_CHECKPOINT.format(**ids)) if checkpoint else None, threads=threads,
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["subsets"], d["audio"] = list(self.subsets), list(self.audio)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RunSpec:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"a run spec has unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**d)


def read_specs(path: str | Path) -> list[RunSpec]:
    """A runs file: a JSON list of RunSpec fields (task, target, condition, seed, settings, encoder,
    subsets, audio, run, scores, optional checkpoint and threads)."""
    data = read_json(path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: a runs file is a JSON list of runs, got {type(data).__name__}")
    return [RunSpec.from_dict(d) for d in data]
