# The known answer: with the demo corpus and a plant (corpus.demo.plant), the corpus's labels follow a rule
# whose direction differs per language, written down in results/demo_corpus/plant.json. Every task that
# reads the planted labels (the planted task and its probe twin) is read against it: does its CLTM recover
# the planted transfer? (docs/statistics.md, "The known answer (planted transfer)")

from cltm.config import planted_tasks, task_label_column  # noqa: E402
from cltm.paths import (  # noqa: E402
    KNOWN_ANSWER_FIGURE,
    KNOWN_ANSWER_JSON,
    KNOWN_ANSWER_TABLE,
    PLANT,
)

PLANTED_TASKS = planted_tasks(config)
# The report lists its categories sorted (the HTML report's menu: localeCompare, digits before letters;
# task names start with a letter, cltm.config schema): the leading digit puts "planted vs recovered" first.
KNOWN_ANSWER_CATEGORY = "1 Known answer: planted vs recovered"


rule known_answer:
    input:
        plant=PLANT,
        cltm="results/{task}/cltm.csv",
        cltm_se="results/{task}/cltm_se.csv",
        cltm_ci_low="results/{task}/cltm_ci_low.csv",
        cltm_ci_high="results/{task}/cltm_ci_high.csv",
        baselines="results/{task}/baselines.csv",  # the flagged rows
        cells="results/{task}/cells.csv",  # the bilingual runs' SEs, for the donor spread
    output:
        figure=report(
            KNOWN_ANSWER_FIGURE.replace("{ext}", "png"),
            caption="../report/known_answer.rst",
            category=KNOWN_ANSWER_CATEGORY,
            subcategory="{task}",
        ),
        figure_svg=KNOWN_ANSWER_FIGURE.replace("{ext}", "svg"),
        summary=report(
            KNOWN_ANSWER_JSON,
            caption="../report/known_answer_summary.rst",
            category=KNOWN_ANSWER_CATEGORY,
            subcategory="{task}",
        ),
        table=report(
            KNOWN_ANSWER_TABLE,
            caption="../report/known_answer_table.rst",
            category=KNOWN_ANSWER_CATEGORY,
            subcategory="{task}",
        ),
    log:
        "results/logs/known_answer/{task}.log",
    wildcard_constraints:
        task=tasks_pattern(PLANTED_TASKS),
    conda:
        "../envs/cltm.yaml"
    params:
        thresholds=ANALYSIS["known_answer"],
        label_column=lambda w: task_label_column(config, w.task),
        note=DEMO_NOTE,
    script:
        "../scripts/known_answer.py"
