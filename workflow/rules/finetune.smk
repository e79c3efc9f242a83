# Fine-tuning: one job per task x target x condition x seed. Each job is a light client of a warm
# local worker (cltm.worker) that has torch and transformers imported once and forks a fresh
# process per run; CLTM_WORKER=0 runs every job in its own process instead. A run's training state
# is checkpointed (not an output: it is removed when the run is done), so a stopped run resumes.
# On SLURM, profiles/slurm bundles these jobs into groups of K runs per SLURM job.


rule settings:
    output:
        SETTINGS,
    log:
        "results/logs/settings/{task}.log",
    conda:
        "../../envs/cltm.yaml"
    params:
        spec=lambda w: {
            "settings": task_settings(w),
            "digest": task_digest(w),
            "device": config["device"],
            "synthetic": SYNTHETIC,
        },
    script:
        "../scripts/settings.py"


# The shell command is the rule's code for Snakemake's rerun triggers: it spells out the checkpoint path
# (cltm.runs.RUN_CHECKPOINT, checked by tests/test_runs.py) so that no edit of it reruns existing runs.
rule finetune:
    input:
        unpack(finetune_inputs),
    output:
        run=RUN_JSON,
        scores=RUN_SCORES,
    log:
        RUN_LOG,
    conda:
        "../../envs/cltm.yaml"
    threads: 1
    resources:
        gpu=1,
        # minutes per run on a cluster, by the task's kind (cltm.tasks.RUNTIME_MINUTES); `attempt` grows on
        # retries. A profile or --set-resources finetune:runtime=... overrides it.
        runtime=lambda wildcards, attempt: task_of(wildcards.task).runtime_minutes
        * attempt,
    shell:
        "python -m cltm.worker finetune --settings {input.settings} --task {wildcards.task}"
        " --target {wildcards.target} --condition {wildcards.condition} --seed {wildcards.seed}"
        " --encoder {input.encoder} --subsets {input.subsets} --audio {input.audio}"
        " --threads {threads} --run {output.run} --scores {output.scores}"
        " --checkpoint results/{wildcards.task}/checkpoints/{wildcards.target}/{wildcards.condition}/seed{wildcards.seed}.pt"
        " > {log} 2>&1"
