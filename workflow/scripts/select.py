"""Select test sets, nested training subsets and trials for every language, on metadata only."""

from pathlib import Path

import pandas as pd

from cltm.io import run_script, script_logger, write_json, write_table
from cltm.sampling import data_summary, select_all

log = script_logger(snakemake.log[0])


def main():
    manifests = {}
    for path in snakemake.input:
        df = pd.read_csv(path, sep="\t", dtype={"utt_id": str, "speaker": str, "gender": str, "split": str},
                         keep_default_na=False, na_values={"duration": [""]})
        manifests[Path(path).stem] = df
    config = {"languages": list(manifests), "data": snakemake.params.data, "tasks": snakemake.params.tasks}
    selections = select_all(config, manifests)
    for path in snakemake.output.subsets:
        task, lang = Path(path).parent.name, Path(path).stem
        write_json(path, selections[lang][task])
    summary = data_summary(manifests, selections)
    write_table(snakemake.output.summary, summary, index=False)
    log("\n" + summary.to_string(index=False))


run_script(main, log)
