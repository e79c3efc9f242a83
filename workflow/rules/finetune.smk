# Fine-tuning: one job per matrix cell (task x target x condition) runs every seed of the cell in one
# process, so the code and the base encoder are loaded once; each seed still writes its own files.


rule finetune:
    input:
        unpack(finetune_inputs),
    output:
        runs=expand("results/{{task}}/runs/{{target}}/{{condition}}/seed{seed}.json", seed=SEEDS),
        scores=expand("results/{{task}}/runs/{{target}}/{{condition}}/seed{seed}.scores.tsv", seed=SEEDS),
    params:
        settings=task_settings,
        digest=task_digest,
        seeds=SEEDS,
        device=config["device"],
        synthetic=SYNTHETIC,
    threads: 1
    resources:
        gpu=1,
    log:
        "results/logs/finetune/{task}/{target}/{condition}.log",
    conda:
        "../../envs/cltm.yaml"
    script:
        "../scripts/finetune.py"
