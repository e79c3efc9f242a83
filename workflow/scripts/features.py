"""Features of one language for the probe tasks: every selected clip encoded once by the frozen encoder,
every hidden layer pooled over time (cltm.train.features), written as a memory-mapped float16 store."""

from pathlib import Path
from types import SimpleNamespace

from cltm.data.audio import AudioStore
from cltm.io import read_json, run_script, script_logger
from cltm.model.device import pick_device
from cltm.model.encoder import load_encoder
from cltm.train.features import extract_features, feature_plan

log = script_logger(snakemake.log[0])


def main():
    import torch

    torch.set_num_threads(snakemake.threads)
    # what feature_plan reads of a task: its kind, its head's statistics, its trimming
    tasks = {name: SimpleNamespace(kind=t["kind"], cfg={"trim_db": t["trim_db"], "tta_speeds": t.get("tta_speeds"),
                                                        **({"probe": {"stats": t["stats"]}} if t["stats"] else {})})
             for name, t in snakemake.params.tasks.items()}
    selections = {}
    for name, t in snakemake.params.tasks.items():
        path = next(p for p in snakemake.input.subsets if Path(p).parent.name == t["subsets_from"])
        selections[name] = read_json(path)
    plan = feature_plan(tasks, selections)
    audio = AudioStore(snakemake.input.audio, Path(snakemake.input.audio).with_suffix(".tsv"))
    encoder = load_encoder(Path(snakemake.input.encoder).parent)
    device = pick_device(snakemake.params.device)
    log(f"{snakemake.wildcards.lang}: {len(plan['utt_ids'])} clips (+ {sum(len(v) for v in plan['trim'].values())} "
        f"trimmed test clips), statistics {'+'.join(plan['stats'])}, device {device}")
    extract_features(encoder, audio, plan["utt_ids"], snakemake.output.npy, snakemake.output.index,
                     stats=plan["stats"], trim=plan["trim"], speeds=plan["speeds"],
                     sample_rate=next((t["sample_rate"] for t in snakemake.params.tasks.values() if "sample_rate" in t),
                                      16000), device=device, log=log)


run_script(main, log)
