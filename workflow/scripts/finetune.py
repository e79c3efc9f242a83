"""One matrix cell: fine-tune once per seed on the condition's training set, evaluate on the target's test set."""

import copy
import time
from pathlib import Path

import torch

from cltm.audio import AudioStore
from cltm.encoder import load_encoder
from cltm.io import read_json, run_script, script_logger, write_json, write_table
from cltm.tasks import pick_device, run_one

log = script_logger(snakemake.log[0])


def main():
    torch.set_num_threads(snakemake.threads)
    w, params = snakemake.wildcards, snakemake.params
    settings = params.settings
    stores, selections = {}, {}
    for sel_path, npy, index in zip(snakemake.input.subsets, snakemake.input.audio, snakemake.input.index):
        lang = Path(sel_path).stem
        selections[lang] = read_json(sel_path)
        stores[lang] = AudioStore(npy, index)
    base = load_encoder(Path(snakemake.input.encoder).parent)
    device = pick_device(params.device)
    for seed, run_path, scores_path in zip(params.seeds, snakemake.output.runs, snakemake.output.scores):
        t0 = time.perf_counter()
        record, scores = run_one(
            w.task, settings["task"], target=w.target, condition=w.condition, seed=seed,
            encoder=copy.deepcopy(base), stores=stores, selections=selections, device=device,
            sample_rate=settings["data"]["sample_rate"], log=log,
        )
        record.update(config_digest=params.digest, synthetic_demo=params.synthetic,
                      encoder=settings["encoder"]["source"], wall_s=round(time.perf_counter() - t0, 2))
        # scores first, the run JSON last: a run counts as done only when its JSON exists
        write_table(scores_path, scores, index=False)
        write_json(run_path, record)


run_script(main, log)
