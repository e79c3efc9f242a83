"""Reading the matrix: family table, per-family means, Mantel tests against URIEL+ distances, the
strongest pairs and the seed plan of a task."""

import pandas as pd

from cltm.analysis.families import language_distances
from cltm.analysis.seeds import seed_plan
from cltm.analysis.typology import family_means, top_pairs, typology_table
from cltm.io import run_script, script_logger, write_table

log = script_logger(snakemake.log[0])


def main():
    inp, out, params = snakemake.input, snakemake.output, snakemake.params
    settings = params.settings
    info = pd.DataFrame(params.info).set_index("code")
    cltm = pd.read_csv(inp.cltm, index_col=0)
    cltm.index, cltm.columns = cltm.index.astype(str), cltm.columns.astype(str)
    se = pd.read_csv(inp.cltm_se, index_col=0)
    se.index, se.columns = se.index.astype(str), se.columns.astype(str)
    baselines = pd.read_csv(inp.baselines)
    cells = pd.read_csv(inp.cells)
    flagged = baselines.loc[baselines["flagged"].astype(bool), "target"].astype(str).tolist()
    langs = list(cltm.index)

    write_table(out.languages, info.loc[langs])
    write_table(out.family_means, family_means(cltm, info["family"]), index=False, float_format="%.6g")

    typ = settings["typology"]
    distances = {kind: language_distances(info.loc[langs], kind) for kind in typ["distances"]}
    table = typology_table(cltm, distances, permutations=typ["permutations"], seed=typ["seed"],
                           alternative=typ["alternative"])
    write_table(out.typology, table, index=False, float_format="%.6g")
    long = [{"distance": kind, "target": i, "donor": j, "value": d.loc[i, j], "cltm": cltm.loc[i, j],
             "target_flagged": i in flagged}
            for kind, d in distances.items() for i in langs for j in langs if i != j]
    write_table(out.distances, pd.DataFrame(long), index=False, float_format="%.6g")

    write_table(out.top_pairs, top_pairs(cltm, se, flagged, k=settings["top_k"]), index=False, float_format="%.6g")
    plan = seed_plan(cells, baselines, settings["seed_planning"]["cell_se"], seeds_now=params.seeds)
    write_table(out.seed_plan, plan, index=False, float_format="%.6g")
    log(f"{snakemake.wildcards.task}: typology\n{table[['distance', 'matrix', 'rho', 'p_value', 'n_pairs']].to_string()}")
    log(f"seed plan for a cell SE of {settings['seed_planning']['cell_se']}:\n{plan.to_string()}")


run_script(main, log)
