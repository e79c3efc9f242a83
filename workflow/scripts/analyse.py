"""Reading the matrix: family table, per-family means, Mantel tests against URIEL+ distances, the
strongest pairs, the stability of the language map and the seed plan of a task."""

import pandas as pd

from cltm.analysis.families import language_distances
from cltm.analysis.matrix import seed_values
from cltm.analysis.seeds import seed_plan
from cltm.analysis.statistics import bootstrap_matrices
from cltm.analysis.table import read_square
from cltm.analysis.typology import ALL_FLAGGED, family_means, map_stability, top_pairs, typology_table
from cltm.io import run_script, script_logger, write_json, write_table

log = script_logger(snakemake.log[0])


def main():
    inp, out, params = snakemake.input, snakemake.output, snakemake.params
    settings = params.settings
    info = pd.DataFrame(params.info).set_index("code")
    cltm, se, low, high = (read_square(path) for path in (inp.cltm, inp.cltm_se, inp.cltm_ci_low, inp.cltm_ci_high))
    baselines = pd.read_csv(inp.baselines)
    cells = pd.read_csv(inp.cells)
    flagged = baselines.loc[baselines["flagged"].astype(bool), "target"].astype(str).tolist()
    langs = list(cltm.index)
    every_row_flagged = set(langs) <= set(flagged)

    write_table(out.languages, info.loc[langs])
    write_table(out.family_means, family_means(cltm, info["family"]), index=False, float_format="%.6g")

    typ = settings["typology"]
    distances = {kind: language_distances(info.loc[langs], kind) for kind in typ["distances"]}
    table = typology_table(cltm, distances, permutations=typ["permutations"], seed=typ["seed"],
                           alternative=typ["alternative"], flagged=flagged)
    write_table(out.typology, table, index=False, float_format="%.6g")
    long = [{"distance": kind, "target": i, "donor": j, "value": d.loc[i, j], "cltm": cltm.loc[i, j],
             "target_flagged": i in flagged}
            for kind, d in distances.items() for i in langs for j in langs if i != j]
    write_table(out.distances, pd.DataFrame(long), index=False, float_format="%.6g")

    write_table(out.top_pairs, top_pairs(cltm, se, flagged, k=settings["top_k"], ci_low=low, ci_high=high),
                index=False, float_format="%.6g")
    runs = pd.read_csv(inp.runs)
    draws, _ = bootstrap_matrices(seed_values(runs, runs["metric"].iloc[0]), langs, draws=200, seed=typ["seed"])
    stability = ({"note": ALL_FLAGGED} if every_row_flagged
                 else map_stability(cltm, draws, settings["cluster_method"]))
    write_json(out.summary, {"task": snakemake.wildcards.task, "every_row_flagged": every_row_flagged,
                             "flagged_rows": flagged, "language_map": stability,
                             "typology": ALL_FLAGGED if every_row_flagged else
                             "Holm's adjustment (p_holm) over the rows of typology.csv: the distances x matrix "
                             "parts of this task; min_p is the smallest p-value the design can reach"})
    plan = seed_plan(cells, baselines, settings["seed_planning"]["cell_se"], seeds_now=params.seeds)
    write_table(out.seed_plan, plan, index=False, float_format="%.6g")
    shown = [c for c in ("distance", "matrix", "rho", "p_value", "min_p", "p_holm", "n_pairs", "note") if c in table]
    log(f"{snakemake.wildcards.task}: typology\n{table[shown].to_string()}")
    log(f"seed plan for a cell SE of {settings['seed_planning']['cell_se']}:\n{plan.to_string()}")


run_script(main, log)
