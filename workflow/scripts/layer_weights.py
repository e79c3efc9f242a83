"""Which layers carry the task: a probe task's learned layer weights (each run's softmax weights over the
encoder's layers), averaged per target over all its runs, as a table and a heatmap (cltm.analysis.compare)."""


from cltm.analysis.compare import layer_weights_table, plot_layer_weights
from cltm.analysis.figures import save
from cltm.io import run_script, script_logger, write_table
from cltm.records import read_cell

log = script_logger(snakemake.log[0])


def main():
    records = [rec for path in snakemake.input.cells for _, rec in read_cell(path)]
    table = layer_weights_table(records)
    write_table(snakemake.output.csv, table, float_format="%.6g")
    fig = plot_layer_weights(table, title=f"Layer weights of the probe heads, {snakemake.wildcards.task} "
                                          f"(mean over each target's {len(records) // max(1, len(table) - 1)} runs)",
                             note=snakemake.params.note)
    save(fig, snakemake.output.png, snakemake.output.svg)
    log(f"{snakemake.wildcards.task}: layer weights of {len(records)} runs:\n{table.round(3).to_string()}")


run_script(main, log)
