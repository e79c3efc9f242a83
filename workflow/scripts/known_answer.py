"""A planted task's matrix against the plant of the synthetic demo corpus: the pair table, the statistics
and verdict, and the figure (cltm.analysis.known_answer)."""

import pandas as pd

from cltm.analysis.figures import save
from cltm.analysis.known_answer import known_answer, plot_known_answer, read_plant
from cltm.analysis.table import read_square
from cltm.io import run_script, script_logger, write_json, write_table

log = script_logger(snakemake.log[0])


def main():
    inp, out, params = snakemake.input, snakemake.output, snakemake.params
    task = snakemake.wildcards.task
    plant = read_plant(inp.plant)
    squares = [read_square(p) for p in (inp.cltm, inp.cltm_se, inp.cltm_ci_low, inp.cltm_ci_high)]
    pairs, summary = known_answer(plant, *squares, pd.read_csv(inp.baselines), pd.read_csv(inp.cells),
                                  dict(params.thresholds), task=task, label_column=params.label_column,
                                  plant_path=inp.plant)
    write_table(out.table, pairs, index=False, float_format="%.6g")
    write_json(out.summary, summary)
    fig = plot_known_answer(pairs, summary, summary["verdict"], task=task, null=bool(plant["null"]),
                            note=params.note)
    save(fig, out.figure, out.figure_svg)
    spread = summary["donor_spread"]["pooled"]
    log(f"{task}: planted vs recovered ({'null control' if plant['null'] else 'planted effect'}): "
        f"{summary['verdict']['headline']}\n  " + "\n  ".join(line["text"] for line in summary["verdict"]["lines"])
        + f"\n  donor spread: pooled F {spread['f']:.3g} (about {spread['expected_under_null']:.3g} if the seed SEs "
          f"explain it), p {spread['p_value']:.3g}")


run_script(main, log)
