"""Gather every language's record: the data report, the dropped clips, the speakers the corpus-wide rules
kept out of some sets; and refuse (before any run starts) final subsets where a test voice trains."""

from pathlib import Path

from cltm.data.report import check_no_leaks, report_tables, speaker_check_table
from cltm.io import read_json, run_script, script_logger, write_table

log = script_logger(snakemake.log[0])


def main():
    records = {Path(p).stem: read_json(p) for p in snakemake.input}
    check_no_leaks(list(records.values()))
    table, dropped = report_tables(list(records.values()))
    write_table(snakemake.output.report, table, index=False)
    write_table(snakemake.output.dropped, dropped, index=False)
    speakers = speaker_check_table(list(records.values()))
    write_table(snakemake.output.speakers, speakers, index=False)
    log("\n" + table.to_string(index=False))
    if len(dropped):
        log(f"{len(dropped)} bad clip(s) dropped and replaced:\n" + dropped.to_string(index=False))
    if len(speakers):
        log(f"{len(speakers)} speaker(s) kept out of some sets by the corpus-wide speaker rules:\n"
            + speakers.groupby(["language", "issue"]).size().to_string())


run_script(main, log)
