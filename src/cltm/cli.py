"""Command line of the jobs that run through the warm worker: `python -m cltm.worker finetune ...`."""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from pathlib import Path

import torch

from cltm.audio import AudioStore
from cltm.checkpoints import Checkpoint, run_key
from cltm.encoder import load_encoder, preload_encoder
from cltm.io import read_json, script_logger, write_json, write_table
from cltm.tasks import pick_device, run_one


def finetune(args) -> None:
    """One run: fine-tune on the condition's training set, evaluate on the target's test set, write
    the scores, then the run JSON (last, atomically: a run counts as done only when its JSON exists)."""
    t0 = time.perf_counter()
    log = script_logger(None)
    torch.set_num_threads(args.threads)
    spec = read_json(args.settings)
    settings = spec["settings"]
    if len(args.subsets) != len(args.audio):
        raise ValueError("--subsets and --audio must list the same languages in the same order")
    stores, selections = {}, {}
    for sel_path, npy in zip(args.subsets, args.audio):
        lang = Path(sel_path).stem
        selections[lang] = read_json(sel_path)
        stores[lang] = AudioStore(npy, Path(npy).with_suffix(".tsv"))
    checkpoint = None
    if args.checkpoint:
        key = run_key(digest=spec["digest"], task=args.task, target=args.target, condition=args.condition,
                      seed=args.seed, subsets=[hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in args.subsets])
        every = float(os.environ.get("CLTM_CHECKPOINT_SECONDS", "600"))
        checkpoint = Checkpoint(args.checkpoint, key, every_s=every, log=log)
    record, scores = run_one(
        args.task, settings["task"], target=args.target, condition=args.condition, seed=args.seed,
        encoder=load_encoder(Path(args.encoder).parent), stores=stores, selections=selections,
        device=pick_device(spec["device"]), sample_rate=settings["data"]["sample_rate"], log=log,
        checkpoint=checkpoint,
    )
    record.update(config_digest=spec["digest"], synthetic_demo=spec["synthetic"],
                  encoder=settings["encoder"]["source"], wall_s=round(time.perf_counter() - t0, 2))
    write_table(args.scores, scores, index=False)
    write_json(args.run, record)
    if checkpoint:
        checkpoint.remove()  # the result exists now; a checkpoint must never outlive it


def preload(argv: list[str]) -> None:
    """In the warm worker, before forking a job: load what every run of this experiment shares."""
    args = build_parser().parse_args(argv)
    if args.command == "finetune":
        preload_encoder(Path(args.encoder).parent)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cltm")
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("finetune", help="one run of the grid (task x target x condition x seed)")
    f.add_argument("--settings", required=True, help="results/<task>/settings.json")
    f.add_argument("--task", required=True)
    f.add_argument("--target", required=True)
    f.add_argument("--condition", required=True, help="single, dual or donor-<language>")
    f.add_argument("--seed", type=int, required=True)
    f.add_argument("--encoder", required=True, help="results/encoder/model.safetensors")
    f.add_argument("--subsets", nargs="+", required=True, help="subset JSON of the target (and donor)")
    f.add_argument("--audio", nargs="+", required=True, help="prepared audio .npy of the same languages")
    f.add_argument("--threads", type=int, default=1)
    f.add_argument("--run", required=True, help="output run JSON")
    f.add_argument("--scores", required=True, help="output per-item scores TSV")
    f.add_argument("--checkpoint", help="resumable training state, saved every CLTM_CHECKPOINT_SECONDS "
                   "(default 600; 0 = never) and removed when the run is done")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "finetune":
        finetune(args)
    return 0
