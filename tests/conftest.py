"""Shared fixtures: real audio files written by the tests, the default config, tiny real encoders, the
inputs of runs as the workflow writes them (`experiment`, `golden_inputs`), and the reduced demo run through
Snakemake once per session (tests take copies of it: tests/workflows.py). Each is built once per session,
whichever test modules use it."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml

ROOT = Path(__file__).resolve().parents[1]

TINY_ENCODER = {
    "hidden_size": 32,
    "num_hidden_layers": 4,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": [16, 16, 16, 16, 16, 16, 16],
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 4,
}


def copy_checkout(where: Path) -> Path:
    """A user's checkout of the workflow files (the package is installed) at `where`, for Snakemake runs."""
    import shutil

    where.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "Snakefile", where)
    for folder in ("workflow", "config", "models"):
        shutil.copytree(ROOT / folder, where / folder)
    return where


@pytest.fixture(scope="session")
def default_config() -> dict:
    """The demo's config without its planted task, whose label only the demo corpus has: the unit tests
    select from manifests of their own (the planted task is tested by tests/test_plant*.py)."""
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg["tasks"].pop("planted")
    # and with the test set the demo had before its planted task needed many test voices (12 per gender):
    # the unit tests' manifests have 8-16 speakers per language
    cfg["data"]["test"] = {"speakers_per_gender": 4, "min_clips_per_speaker": 4, "max_clips_per_speaker": 6}
    return cfg


@pytest.fixture
def config(default_config) -> dict:
    return copy.deepcopy(default_config)


def tone(freq: float, seconds: float, sr: int, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def make_manifest(lang: str, speakers_per_gender: int, clips_per_speaker: int, unlabelled: int = 0) -> pd.DataFrame:
    """Metadata only (selection never decodes audio)."""
    rows = []
    for gender in ("male", "female"):
        for s in range(speakers_per_gender):
            for c in range(clips_per_speaker):
                rows.append((f"{lang}_{gender}{s}_{c:03d}", f"/nowhere/{lang}_{gender}{s}_{c}.wav",
                             f"{lang}-{gender}-{s}", gender, lang, 2.0, ""))
    for s in range(unlabelled):
        for c in range(clips_per_speaker):
            rows.append((f"{lang}_x{s}_{c:03d}", f"/nowhere/{lang}_x{s}_{c}.wav", f"{lang}-x-{s}", "", lang, 2.0, ""))
    return pd.DataFrame(rows, columns=["utt_id", "path", "speaker", "gender", "language", "duration", "split"])


@pytest.fixture(scope="session")
def demo_release(tmp_path_factory) -> Path:
    """A small synthetic Common Voice-shaped release (real speech from eSpeak NG) for two languages."""
    from cltm.demo.synth import synthesize_language

    root = tmp_path_factory.mktemp("demo_release")
    for lang in ("en", "tr"):
        synthesize_language(lang, root / lang, n_speakers_per_gender=4, utterances_per_speaker=6, seed=3)
    return root


def write_wav(path: Path, wave: np.ndarray, sr: int, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave, sr, format=fmt)
    return path


@pytest.fixture(scope="session")
def cv_release(tmp_path_factory) -> Path:
    """A pristine Common Voice-shaped release with real MP3 clips (copy it before corrupting clips):
    sv-SE as a recent release (v17+ header, new gender vocabulary, 48 kHz, clip_durations.tsv) and
    zh-CN as a v12 release (v12 header, male/female/other, 32 kHz, no clip_durations.tsv). Real
    releases are uniform; one of each here keeps the tests to a single synthesis."""
    from cv_release import write_language

    root = tmp_path_factory.mktemp("cv-corpus-test") / "cv-corpus-22.0-2025-06-20"
    write_language(root, "sv-SE", release="recent", sample_rate=48000, speakers_per_gender=4, clips_per_speaker=5,
                   voice_language="en", seed=1)
    write_language(root, "zh-CN", release="v12", sample_rate=32000, speakers_per_gender=4, clips_per_speaker=5,
                   voice_language="de", seed=2)
    return root


@pytest.fixture(scope="session")
def gpu_check(tmp_path_factory) -> dict:
    """benchmarks/gpu_check.sh --device cpu --quick, once per session (tests/test_gpu_check.py reads its table,
    tests/test_gpu_throughput.py its benchmark): the finished process, its $OUT folder and its work folder."""
    import os
    import subprocess
    import sys

    tmp = tmp_path_factory.mktemp("gpu_check")
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp / "out")}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--quick",
                           "--workdir", str(tmp / "work")], capture_output=True, text=True, env=env, timeout=1800)
    return {"proc": proc, "out": tmp / "out", "work": tmp / "work"}


@pytest.fixture(scope="session")
def reduced_run(tmp_path_factory) -> Path:
    """A user's checkout (workflow files only; the package is installed) after a full run of the reduced demo
    (workflows.REDUCED, `--configfile reduced.yaml`), once per session. A template: no test changes it; a
    module or test takes its own copy (`workflows.copy_workflow`), which is a finished workflow too."""
    from workflows import REDUCED, snakemake, write_config

    work = copy_checkout(tmp_path_factory.mktemp("reduced_run") / "checkout")
    write_config(work, "reduced.yaml", REDUCED)
    snakemake(work, "--cores", "2", "--configfile", "reduced.yaml")
    return work


# every global draw a run makes: dropout, LayerDrop (torch), time masking (numpy)
RANDOM_ENCODER = {"source": "random", "config": TINY_ENCODER, "init_seed": 0,
                  "overrides": {"layerdrop": 0.25, "mask_time_prob": 0.3, "mask_time_length": 4, "hidden_dropout": 0.1,
                                "attention_dropout": 0.1, "feat_proj_dropout": 0.1}}
QUICK = {"epochs": 1, "batch_size": 2, "crop_seconds": 0.5, "lr": 2e-3, "schedule": "linear", "warmup_ratio": 0.1,
         "weight_decay": 0.0, "grad_clip": 1.0}


@pytest.fixture(scope="session")
def experiment(demo_release, tmp_path_factory, default_config):
    """An experiment's inputs as the workflow writes them (settings, encoder, subsets, audio), two languages,
    RANDOM_ENCODER and QUICK training (tests/test_runs.py, test_packing.py, test_records.py). Tests write their
    runs under folders of their own names (cltm.grid.spec.RunSpec paths); one that changes an input puts it back."""
    from cltm.config import digest, run_settings
    from cltm.data.corpora import read_common_voice
    from cltm.data.plan import select_language
    from cltm.data.prepare import prepare_language
    from cltm.io import write_json
    from cltm.model.encoder import materialise_encoder

    cfg = copy.deepcopy(default_config)
    cfg["device"] = "cpu"
    cfg["encoder"] = copy.deepcopy(RANDOM_ENCODER)
    cfg["data"]["test"].update(speakers_per_gender=2, min_clips_per_speaker=4, max_clips_per_speaker=4)
    cfg["tasks"]["gender"].update(n_per_class=3, max_clips_per_speaker=3, training=QUICK)
    cfg["tasks"]["speaker"].update(n_utterances=6, max_utterances_per_speaker=3, max_positives_per_speaker=4,
                                   training=QUICK)
    root = tmp_path_factory.mktemp("experiment")
    materialise_encoder(cfg["encoder"], root / "results/encoder")
    for task in ("gender", "speaker"):
        settings = run_settings(cfg, task)
        write_json(root / f"results/{task}/settings.json",
                   {"settings": settings, "digest": digest(settings), "device": "cpu", "synthetic": True})
    for lang in ("en", "tr"):
        manifest = read_common_voice(demo_release, lang)
        plan = select_language(cfg, manifest, lang)
        wanted = {u for s in plan.values() for u in s["test"] + s["single"] + s["extra"]}
        prepare_language(manifest, wanted, root / f"results/audio/{lang}.npy", root / f"results/audio/{lang}.tsv",
                         log=lambda s: None)
        for task, sel in plan.items():
            write_json(root / f"results/subsets/{task}/{lang}.json", sel)
    return root


# the golden runs' training (tests/test_golden.py): its figures are of these settings
GOLDEN_TRAINING = {"epochs": 2, "batch_size": 4, "crop_seconds": 1.0, "lr": 2e-3, "schedule": "linear",
                   "warmup_ratio": 0.1, "weight_decay": 0.0, "grad_clip": 1.0}


@pytest.fixture(scope="session")
def golden_inputs(demo_release, tmp_path_factory, default_config):
    """The golden runs' inputs (tests/test_golden.py, test_tta.py): real synthetic speech of en and tr with a
    tiny random HuBERT (fine-tuning), and synthetic feature stores (probe), both deterministic. Read only."""
    from cltm.data.audio import AudioStore
    from cltm.data.corpora import read_common_voice
    from cltm.data.plan import select_language
    from cltm.data.prepare import prepare_language
    from cltm.demo.features import synthetic_language
    from cltm.model.encoder import build_encoder

    quiet = {"log": lambda message: None}
    cfg = copy.deepcopy(default_config)
    cfg["data"]["test"].update(speakers_per_gender=2, min_clips_per_speaker=4, max_clips_per_speaker=4)
    cfg["tasks"]["gender"].update(n_per_class=3, max_clips_per_speaker=3, training=GOLDEN_TRAINING)
    cfg["tasks"]["speaker"].update(n_utterances=8, max_utterances_per_speaker=4, max_positives_per_speaker=6,
                                   training=GOLDEN_TRAINING)
    out = tmp_path_factory.mktemp("golden")
    stores, selections = {}, {"gender": {}, "speaker": {}}
    for lang in ("en", "tr"):
        m = read_common_voice(demo_release, lang)
        sel = select_language(cfg, m, lang)
        wanted = {u for s in sel.values() for u in s["test"] + s["single"] + s["extra"]}
        prepare_language(m, wanted, out / f"{lang}.npy", out / f"{lang}.tsv", **quiet)
        stores[lang] = AudioStore(out / f"{lang}.npy", out / f"{lang}.tsv")
        for task in sel:
            selections[task][lang] = sel[task]
    features, probe_sel = {}, {"gender": {}, "speaker": {}}
    for lang in ("en", "tr"):
        features[lang], subsets = synthetic_language(lang, out / "features")
        for task in subsets:
            probe_sel[task][lang] = subsets[task]
    encoder = build_encoder("random", config=TINY_ENCODER, overrides={"layerdrop": 0.0}, init_seed=0)
    return cfg, stores, selections, encoder, features, probe_sel



# ------------------------------------------------------------------------------------------------------------
# Two test processes (`make test` runs `pytest -n 2`, pytest-xdist): most of the suite's wall time is waiting
# (Snakemake's job polling, the SLURM cluster's scheduler, process start-up), so two processes on two cores
# finish well before one. Each process builds its own session fixtures, so the modules that share an expensive
# one run in the same process (one work unit per set of modules linked by a fixture below: `GroupScheduling`),
# and the longest units are handed out first, so neither process is left with one at the end.

SHARED = ("experiment", "golden_inputs", "gpu_check", "reduced_run", "cv_release")
"""Session fixtures too expensive to build twice: the modules using one of them (in a test's or a fixture's
arguments) are one work unit. demo_release and default_config are cheap: each process builds its own."""

FIRST = ("test_slurm.py", "test_planted_workflow.py", "reduced_run", "experiment", "test_encoder_families_workflow.py")
"""Work units started first, longest first (the suite's `--durations`): the SLURM cluster's runs, the planted
known answer, the reduced demo and the modules reading it, the runs' inputs."""


def module_groups(folder: Path = Path(__file__).parent) -> dict[str, str]:
    """Test module file name -> its work unit: the first SHARED fixture its set of linked modules uses, or the
    module itself. Read from the sources (the scheduler runs before any test is collected)."""
    import re

    uses = {}
    for path in sorted(folder.glob("test_*.py")):
        names = set()
        for args in re.findall(r"def \w+\(([^)]*)\)", path.read_text()):
            names |= {a.split(":")[0].split("=")[0].strip() for a in args.split(",")}
        uses[path.name] = [f for f in SHARED if f in names]
    parent = {name: name for name in uses}

    def root(name: str) -> str:
        while parent[name] != name:
            name = parent[name]
        return name

    owner: dict[str, str] = {}
    for name, fixtures in uses.items():
        for fixture in fixtures:
            if fixture in owner:
                parent[root(name)] = root(owner[fixture])
            else:
                owner[fixture] = name
    members: dict[str, list[str]] = {}
    for name in uses:
        members.setdefault(root(name), []).append(name)
    label = {r: next((f for f in SHARED if any(f in uses[n] for n in names)), r) for r, names in members.items()}
    return {name: label[root(name)] for name in uses}


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    groups = module_groups()

    class GroupScheduling(LoadScopeScheduling):
        """xdist's per-module scheduling, with the modules of one SHARED fixture as one unit."""

        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return groups.get(Path(module).name, module)

    config.option.loadscopereorder = False  # keep the collection order below: longest units first
    return GroupScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    """Modules in the order their work units start (FIRST, then as collected), each module's tests together
    (so its module fixtures are built once)."""
    groups = module_groups()
    modules: dict[str, list] = {}
    for item in items:
        modules.setdefault(item.path.name, []).append(item)

    def rank(name: str) -> int:
        unit = groups.get(name, name)
        return FIRST.index(unit) if unit in FIRST else FIRST.index(name) if name in FIRST else len(FIRST)

    items[:] = [item for name in sorted(modules, key=rank) for item in modules[name]]
