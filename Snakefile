# cltm: Cross-Lingual Transfer Matrices for paralinguistic speech tasks.
# `snakemake --cores N` runs config/config.yaml (the synthetic demo); a real experiment adds
# `--configfile my_experiment.yaml`. See README.md and docs/outputs.md for the path scheme and the outputs.

import os

from snakemake.utils import min_version

min_version("9.0")


# the default config, found beside this file whatever the working directory (`-s path/to/Snakefile`)
configfile: os.path.join(workflow.basedir, "config", "config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/matrix.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/known_answer.smk"


report: "workflow/report/workflow.rst"


onstart:
    check_device()  # device: cuda on a machine without CUDA stops here, before any job (local runs only)
    record_config_files()  # other config files than results/ was made with stop here (a forgotten --configfile)
    keep_or_forget_runs()  # a run named with -f is trained again; the others of its cell are reused


onsuccess:
    say_what_happened()  # per task: runs trained, put back from kept runs, resumed


onerror:
    say_what_happened()


rule all:
    default_target: True
    input:
        final_targets(config),
