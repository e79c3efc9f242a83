# Fine-tuning: one job per cell (task x target x condition, all its seeds). Each job is a light client
# (python -m cltm.worker) of a warm local worker (cltm.grid.worker) that has torch and transformers
# imported once and forks a process per job; the cell's runs train one after the other in it, each with
# its own generators (or `runs_per_gpu` at once, in processes of their own: cltm.grid.pack). A cell whose
# runs are all kept is put back by the client without the worker. CLTM_WORKER=0 runs every job in its
# own process instead. A run's training state is checkpointed (not an output: it is removed when the run
# is done), so a stopped run resumes. On SLURM each cell is one SLURM job.

# the cell job's time request, from measured time
from cltm.grid.runtime import finetune_runtime


rule settings:
    output:
        SETTINGS,
    log:
        "results/logs/settings/{task}.log",
    conda:
        "../envs/cltm.yaml"
    params:
        spec=lambda w: {
            "settings": task_settings(w),
            "digest": task_digest(w),
            "device": config["device"],
            "synthetic": SYNTHETIC,
        },
    script:
        "../scripts/settings.py"


# One job per cell (task x target x condition) with all its seeds: at thesis scale a job per run would
# cost Snakemake minutes of planning (docs/clusters.md, "Thesis scale"). Its one output is the cell file (every
# run's record; the matrix is assembled from these); each run's JSON and scores are written beside as
# before. The job trains only the runs that are not kept with the inputs they have now (cltm.grid.kept).
# The shell command is the rule's code for Snakemake's rerun triggers: it spells out no path that an
# edit could change (checkpoints and per-run logs follow cltm.paths, checked by tests/test_runs.py).
rule finetune:
    input:
        unpack(cell_inputs),
    output:
        cell=CELL_JSON,
    log:
        CELL_LOG,
    wildcard_constraints:
        task=tasks_pattern(FINETUNE_TASKS),
    conda:
        "../envs/cltm.yaml"
    threads: 1
    resources:
        gpu=1,
        # minutes for the cell's job on a cluster (cltm.grid.runtime): the measured time of finished cells
        # with the same settings, else preflight.seconds_per_run, times the seeds and a margin; without a
        # measurement the task kind's minutes per run (cltm.defaults.RUNTIME_MINUTES) times the seeds.
        # `attempt` grows it on retries. A profile or --set-resources finetune:runtime=... overrides it.
        runtime=lambda wildcards, attempt: finetune_runtime(
            config,
            wildcards.task,
            wildcards.condition,
            lambda: task_digest(wildcards),
            len(task_seeds(config, wildcards.task)),
            attempt,
            task_of(wildcards.task).runtime_minutes,
        ),
        # runs of the cell trained at once on its GPU (docs/clusters.md, "Running fast on GPUs"); results are
        # each run's alone, so a change retrains nothing (resources are not rerun triggers)
        runs_per_gpu=1,
    params:
        seeds=lambda w: task_seeds(config, w.task),  # a seed added reruns the cell's job, which trains that seed only
    shell:
        "python -m cltm.worker finetune-cell --settings {input.settings} --task {wildcards.task}"
        " --target {wildcards.target} --condition {wildcards.condition}"
        " --encoder {input.encoder} --subsets {input.subsets} --audio {input.audio}"
        " --threads {threads} --pack {resources.runs_per_gpu} --seeds {params.seeds} --cell {output.cell}"
        " > {log} 2>&1"


# One run, by its file: `snakemake results/<task>/runs/<target>/<condition>/seed<k>.json -f`. The grid
# never asks for it (its cells do the runs); named, it trains that run (or, named without -f and
# missing, puts its kept copy back) and updates the run's record in its cell's file, so that the next
# assembly takes it. Fine-tuning and probe tasks alike.
rule run:
    input:
        unpack(cell_inputs),
    output:
        run=RUN_JSON,
    log:
        RUN_LOG.replace(".log", ".job.log"),
    conda:
        "../envs/cltm.yaml"
    threads: 1
    resources:
        gpu=lambda w: 0 if w.task in PROBE_TASKS else 1,
        runtime=lambda wildcards, attempt: (
            2 * attempt
            if wildcards.task in PROBE_TASKS
            else finetune_runtime(
                config,
                wildcards.task,
                wildcards.condition,
                lambda: task_digest(wildcards),
                1,
                attempt,
                task_of(wildcards.task).runtime_minutes,
            )
        ),
    params:
        seeds=lambda w: task_seeds(config, w.task),
        cell=lambda w: CELL_JSON.format(
            task=w.task, target=w.target, condition=w.condition
        ),
    shell:
        "python -m cltm.worker finetune-cell --settings {input.settings} --task {wildcards.task}"
        " --target {wildcards.target} --condition {wildcards.condition}"
        " --encoder {input.encoder} --subsets {input.subsets} --audio {input.audio}"
        " --threads {threads} --seeds {wildcards.seed} --update-cell {params.cell} --cell-seeds {params.seeds}"
        " > {log} 2>&1"


# Probe mode (docs/tasks.md, "Probe mode"): the encoder is frozen, each selected clip of a language is encoded
# once (every hidden layer pooled over time), and each run trains a small head on those features.
# Features per language and per encoder (LANGUAGE_FEATURES holds the encoder settings' digest); on a GPU
# where there is one (`device`), else on CPU.
rule features:
    input:
        unpack(features_inputs),
    output:
        npy=LANGUAGE_FEATURES,
        index=LANGUAGE_FEATURES.replace(".npy", ".tsv"),
    log:
        "results/logs/features/{lang}.log",
    conda:
        "../envs/cltm.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        # only what decides what is stored (a head's other settings must not re-extract features)
        tasks=features_settings,
        device=config["device"],
    script:
        "../scripts/features.py"


# A probe cell: the same outputs, kept runs and per-run keys as a fine-tuning cell (cltm.grid.kept), in one
# process; its runs read features instead of audio. On SLURM, probe cells are bundled many to a job
# (profiles/slurm: group probe_bundle), on the partition the profile names.
rule probe:
    input:
        unpack(cell_inputs),
    output:
        cell=CELL_JSON,
    log:
        CELL_LOG,
    wildcard_constraints:
        task=tasks_pattern(PROBE_TASKS),
    conda:
        "../envs/cltm.yaml"
    threads: 1
    resources:
        # minutes: seconds per run on a CPU
        runtime=lambda wildcards, attempt: 2
        * len(task_seeds(config, wildcards.task))
        * attempt,
    params:
        seeds=lambda w: task_seeds(config, w.task),
    shell:
        "python -m cltm.worker finetune-cell --settings {input.settings} --task {wildcards.task}"
        " --target {wildcards.target} --condition {wildcards.condition}"
        " --encoder {input.encoder} --subsets {input.subsets} --audio {input.audio}"
        " --threads {threads} --seeds {params.seeds} --cell {output.cell}"
        " > {log} 2>&1"
