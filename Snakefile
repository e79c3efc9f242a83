# cltm: Cross-Lingual Transfer Matrices for paralinguistic speech tasks.
# `snakemake --cores N` runs config/config.yaml (the synthetic demo); a real experiment adds
# `--configfile my_experiment.yaml`. See README.md for the path scheme and the outputs.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/matrix.smk"
include: "workflow/rules/analysis.smk"


report: "workflow/report/workflow.rst"


rule all:
    default_target: True
    input:
        final_targets(),
