"""Plan the selection of every language on metadata only: test set, nested training subsets, trials.

Every language short of data is reported at once, before any audio is decoded. The plan is final
unless audio preparation finds bad clips (then it replaces them: see prepare_audio.py).
"""

from pathlib import Path

from cltm.corpora import read_manifest_table
from cltm.io import run_script, script_logger, write_json, write_table
from cltm.sampling import data_summary, select_all

log = script_logger(snakemake.log[0])


def main():
    manifests = {Path(p).stem: read_manifest_table(p) for p in snakemake.input}
    selections = select_all(snakemake.params.config, manifests)
    for path in snakemake.output.plans:
        write_json(path, selections[Path(path).stem])
    summary = data_summary(manifests, selections)
    write_table(snakemake.output.summary, summary, index=False)
    log("\n" + summary.to_string(index=False))


run_script(main, log)
