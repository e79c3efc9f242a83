"""A probe task's matrix against its fine-tuning twin's (subsets_from): rank agreement, sign agreement,
and a scatter plot of the cells (cltm.analysis.compare)."""

import pandas as pd

from cltm.analysis.compare import compare_matrices, scatter
from cltm.analysis.figures import save
from cltm.io import run_script, script_logger, write_json

log = script_logger(snakemake.log[0])


def main():
    inp = snakemake.input
    probe, finetune = pd.read_csv(inp.probe), pd.read_csv(inp.finetune)
    result = compare_matrices(probe, finetune, pd.read_csv(inp.probe_runs), pd.read_csv(inp.finetune_runs))
    names = {"probe": snakemake.wildcards.probe, "finetune": snakemake.wildcards.twin}
    write_json(snakemake.output.json, {**names, **result, "synthetic_demo": bool(snakemake.params.synthetic)})
    fig = scatter(probe, finetune, result, probe_name=names["probe"], finetune_name=names["finetune"],
                  note=snakemake.params.note)
    save(fig, snakemake.output.png, snakemake.output.svg)
    stats = result["all_cells"]
    log(f"{names['probe']} vs {names['finetune']}: {stats['cells']} cells, Spearman rho (relative change) "
        f"{stats['relative_change']['rho']} {stats['relative_change']['ci95']}, (CLTM) {stats['cltm']['rho']} "
        f"{stats['cltm']['ci95']}, same sign {stats['sign_agreement']} (chance {stats['sign_agreement_chance']}), "
        f"noise ceiling {result['noise_ceiling']}")


run_script(main, log)
