"""Write the configured encoder (hub id, local directory, or random config) to results/encoder/."""

from pathlib import Path

from cltm.io import run_script, script_logger, write_json
from cltm.model.encoder import materialise_encoder

log = script_logger(snakemake.log[0])


def main():
    summary = materialise_encoder(snakemake.params.encoder, Path(snakemake.output.config).parent,
                                  sample_rate=snakemake.params.sample_rate)
    write_json(snakemake.output.summary, summary)
    inputs = summary["inputs"]
    log(f"encoder {summary['source']}: {summary['model_class']}, {summary['parameters']:,} parameters; input "
        f"{'normalised per segment' if inputs['do_normalize'] else 'not normalised'} "
        f"({inputs['read_from'] or 'no preprocessor_config.json: the default'}); "
        f"{'padded batches with an attention mask' if inputs['padded_batches'] else 'no padding (equal-length crops, one test clip at a time)'}")


run_script(main, log)
