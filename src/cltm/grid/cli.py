"""Command line of the jobs that run through the warm worker: `python -m cltm.worker finetune-cell ...`
(the runs of one cell, what a grid job calls: `cltm.grid.job`), `python -m cltm.worker finetune ...` (one
run, what a learning-curve job calls) and `python -m cltm.worker finetune-many --runs runs.json` (a
list of runs in one process, each with its own generators: `cltm.grid.execute.execute_runs`).

Standard library only at import: the job's client parses its command line here and puts back a cell
whose runs are all kept (`restore_only`) without torch; the commands that train import the trainer."""

from __future__ import annotations

import argparse
from pathlib import Path

from cltm.grid.cell import cell_specs, record_event, split_cell, update_cell, write_cell
from cltm.grid.spec import RunSpec, read_specs
from cltm.io import script_logger
from cltm.paths import run_path


def spec_of(args) -> RunSpec:
    return RunSpec(task=args.task, target=args.target, condition=args.condition, seed=args.seed,
                   settings=args.settings, encoder=args.encoder, subsets=tuple(args.subsets), audio=tuple(args.audio),
                   run=args.run, scores=args.scores, checkpoint=args.checkpoint, threads=args.threads)


def finetune(args) -> None:
    """One run: fine-tune on the condition's training set, evaluate on the target's test set, write
    the scores, then the run JSON (last, atomically: a run counts as done only when its JSON exists)."""
    from cltm.grid.execute import execute_runs  # torch: only where a run is trained (see the module's doc)

    execute_runs([spec_of(args)], log=script_logger(None))


def cell_of(args) -> list[RunSpec]:
    return cell_specs(task=args.task, target=args.target, condition=args.condition,
                      runs=[run_path(args.task, args.target, args.condition, seed) for seed in args.seeds],
                      settings=args.settings, encoder=args.encoder, subsets=args.subsets, audio=args.audio,
                      threads=args.threads)


def finetune_cell(args) -> None:
    """The runs of one cell: kept ones put back, the others trained (`cltm.grid.job.execute_cell`)."""
    from cltm.grid.job import execute_cell  # torch: only where a run is trained (see the module's doc)

    specs = cell_of(args)
    execute_cell(specs, cell=args.cell, pack=args.pack, log=script_logger(None))
    if args.update_cell:
        update_cell(args.update_cell, specs, args.cell_seeds or [])


def finetune_many(args) -> None:
    from cltm.grid.execute import execute_runs  # torch: only where a run is trained


    specs = read_specs(args.runs)
    if args.threads is not None:
        specs = [RunSpec.from_dict({**s.to_dict(), "threads": args.threads}) for s in specs]
    execute_runs(specs, log=script_logger(None), keep_going=args.keep_going)


def preload(argv: list[str]) -> None:
    """In the warm worker, before forking a job: load what every run of this experiment shares."""
    from cltm.model.encoder import preload_encoder  # the worker has torch imported already

    args = build_parser().parse_args(argv)
    if args.command in ("finetune", "finetune-cell"):
        preload_encoder(Path(args.encoder).parent)
    elif args.command == "finetune-many":
        specs = read_specs(args.runs)
        if specs:
            preload_encoder(Path(specs[0].encoder).parent)


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
    c = sub.add_parser("finetune-cell", help="the runs of one cell (task x target x condition), one per seed")
    for flag in ("--settings", "--task", "--target", "--condition", "--encoder"):
        c.add_argument(flag, required=True)
    c.add_argument("--subsets", nargs="+", required=True, help="subset JSON of the target (and donor)")
    c.add_argument("--audio", nargs="+", required=True, help="prepared audio .npy of the same languages")
    c.add_argument("--seeds", nargs="+", type=int, required=True, help="the runs to do (each at the workflow's "
                   "paths, cltm.paths: results/<task>/runs/<target>/<condition>/seed<k>.json and its scores)")
    c.add_argument("--cell", help="output: the cell file, every run's record (results/<task>/cells/...)")
    c.add_argument("--update-cell", help="a cell file whose records of these runs are replaced (one run named "
                   "by its file), if it exists")
    c.add_argument("--cell-seeds", nargs="*", type=int, help="with --update-cell: the seeds the cell holds "
                   "(a run of another seed is added only if listed)")
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--pack", type=int, default=1, help="runs trained at once on this node's device "
                   "(the rule's resource runs_per_gpu; cltm.grid.pack)")
    m = sub.add_parser("finetune-many", help="a list of runs in one process, each as if alone")
    m.add_argument("--runs", required=True, help="JSON list of runs: the fields of cltm.grid.spec.RunSpec (task, "
                   "target, condition, seed, settings, encoder, subsets, audio, run, scores, checkpoint)")
    m.add_argument("--threads", type=int, help="torch CPU threads for every run (default: each run's, 1)")
    m.add_argument("--keep-going", action="store_true", help="go on with the other runs when one fails")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "finetune":
        finetune(args)
    elif args.command == "finetune-cell":
        finetune_cell(args)
    elif args.command == "finetune-many":
        finetune_many(args)
    return 0


def restore_only(argv: list[str]) -> bool:
    """For the job's client, before it starts the worker: a cell whose runs are all kept is put back
    here (standard library only) and the worker is not needed. True when done."""
    args = build_parser().parse_args(argv)
    if args.command != "finetune-cell":
        return False
    specs = cell_of(args)
    log = script_logger(None)
    kept, todo = split_cell(specs, log=lambda m: None)
    if todo:
        return False  # split_cell put back what it could; the worker trains the rest and says so
    for spec in kept:
        log(f"{spec.name}: kept (finished earlier with the same inputs)")
    record_event(specs, kept, [])
    if args.cell:
        write_cell(args.cell, specs)
    if args.update_cell:
        update_cell(args.update_cell, specs, args.cell_seeds or [])
    log(f"all {len(kept)} run(s) of the cell kept; nothing to train")
    return True
