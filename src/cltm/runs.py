"""A run as data: (task, target, condition, seed), its inputs and its outputs.

The one definition of the condition names (`single`, `dual`, `donor-<lang>`) and of the path scheme of
runs, imported by the package and by the workflow (workflow/rules/common.smk, finetune.smk), so that a
path written by one is the path the others read. Standard library only: Snakemake imports it while
planning, which must not pay for torch.

Running runs is `cltm.runner.execute_runs(specs)`; a `RunSpec` says everything one run reads and writes.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

SINGLE, DUAL = "single", "dual"
DONOR_PREFIX = "donor-"
# language codes as Common Voice writes them (`zh-CN`, `sv-SE`): hyphens allowed, so a donor condition
# is split at its prefix only
LANGUAGE_PATTERN = "[A-Za-z0-9-]+"
CONDITION_PATTERN = f"{SINGLE}|{DUAL}|{DONOR_PREFIX}{LANGUAGE_PATTERN}"

# the files of one run, relative to the working directory (as the workflow writes them)
RUN_STEM = "results/{task}/runs/{target}/{condition}/seed{seed}"
RUN_JSON = RUN_STEM + ".json"  # the run's record: the only proof that the run is done
RUN_SCORES = RUN_STEM + ".scores.tsv"  # per-clip predictions (gender) or trial scores (speaker)
RUN_LOG = "results/logs/finetune/{task}/{target}/{condition}/seed{seed}.log"
RUN_CHECKPOINT = "results/{task}/checkpoints/{target}/{condition}/seed{seed}.pt"  # removed when the run is done
# A cell = (task, target, condition): the unit of a Snakemake job, all its seeds (cltm.cells). Its
# job log; each trained run also writes its own log at RUN_LOG.
CELL_LOG = "results/logs/finetune/{task}/{target}/{condition}.log"
# the records of a cell's runs together, what the matrix is assembled from (one file per cell, not per run)
CELL_JSON = "results/{task}/cells/{target}/{condition}.json"
# Finished runs are also kept here (hard links: no extra space), so that a cell job, whose outputs
# Snakemake deletes before it starts, gets back every run whose inputs are unchanged instead of
# training it again (cltm.cells). Not a result: only the files under results/<task>/runs/ are.
KEPT_STEM = "results/.cltm/kept/{task}/{target}/{condition}/seed{seed}"
SETTINGS = "results/{task}/settings.json"
ENCODER = "results/encoder/model.safetensors"
SUBSETS = "results/subsets/{task}/{lang}.json"
AUDIO = "results/audio/{lang}.npy"  # prepared clips of a language, read with its index beside it
AUDIO_INDEX = "results/audio/{lang}.tsv"


def donor_condition(lang: str) -> str:
    """The bilingual condition of donor `lang`: `donor-<lang>`."""
    return f"{DONOR_PREFIX}{lang}"


def donor_of(condition: str) -> str | None:
    """The donor language of a `donor-<lang>` condition, else None (`single`, `dual`)."""
    return condition[len(DONOR_PREFIX):] if condition.startswith(DONOR_PREFIX) else None


def conditions_of(target: str, languages) -> list[str]:
    """A target's conditions in a matrix of `languages`: single, dual, and one donor per other language."""
    return [SINGLE, DUAL] + [donor_condition(d) for d in languages if d != target]


def is_condition(condition: str) -> bool:
    return re.fullmatch(CONDITION_PATTERN, condition) is not None


_RUN_FILE = re.compile(
    r"(?:.*/)?results/(?P<task>[^/]+)/runs/(?P<target>[^/]+)/(?P<condition>[^/]+)/seed(?P<seed>\d+)"
    r"(?P<suffix>\.json|\.scores\.tsv)$")


def parse_run_path(path: str | Path) -> dict | None:
    """{task, target, condition, seed, suffix} of a run's file (RUN_JSON or RUN_SCORES), else None."""
    m = _RUN_FILE.fullmatch(str(path).replace("\\", "/"))
    if not m or not is_condition(m["condition"]):
        return None
    return {**m.groupdict(), "seed": int(m["seed"])}


def run_path(task: str, target: str, condition: str, seed: int, suffix: str = ".json") -> str:
    """`results/<task>/runs/<target>/<condition>/seed<k><suffix>` (.json the record, .scores.tsv its scores)."""
    return RUN_STEM.format(task=task, target=target, condition=condition, seed=seed) + suffix


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
