"""Preflight: before any GPU hour, can every language supply the requested regimes, how many runs
does the grid have, and what will it cost?

Everything here reads metadata only (the per-language manifests); no audio is decoded. The cost is
the number of runs times a per-run cost the user measures once on their own hardware
(`preflight.seconds_per_run`, see docs/data.md, "Preflight") and is never guessed.
"""

from __future__ import annotations

import math

import pandas as pd

from cltm.config import conditions, task_languages, task_seeds
from cltm.data.plan import language_test_speakers, select_language, speaker_rules
from cltm.data.selection import SelectionError, split_pools, usable_clips
from cltm.data.speakers import SpeakerRules, checks_columns, speaker_checks
from cltm.paths import DUAL, run_path
from cltm.tasks import TaskError, make_task
from cltm.tasks.labels import GENDERS

MEASURE_COMMAND = "snakemake --cores 1 {run} && grep wall_s {run}"


def task_capacity(task, train: pd.DataFrame) -> dict:
    """What preflight shows for a task: training clips needed (single + extra), usable, and the spare."""
    if task.kind == "speaker_verification":
        need = 2 * task.cfg["n_utterances"]
        usable = usable_clips(train, task.cfg["max_utterances_per_speaker"])
        return {"train_clips_needed": str(need),
                "train_clips_usable": f"{usable} from {train['speaker'].nunique()} speakers",
                "spare_clips": usable - need}
    classes = task.labelled(train)
    need = 2 * task.n_per_class
    usable = {c: usable_clips(train[classes == c], task.max_clips_per_speaker) for c in task.classes}
    return {"train_clips_needed": f"{need} per class",
            "train_clips_usable": ", ".join(f"{usable[c]} {c}" for c in task.classes),
            "spare_clips": min(usable.values()) - need}


def language_capacity(config: dict, manifest: pd.DataFrame, lang: str, rules: SpeakerRules | None = None) -> list[dict]:
    """One row per task that uses `lang`: what it needs, what the corpus has, and whether selection succeeds.
    `rules`: the corpus-wide speaker rules (`cltm.data.plan.speaker_rules`); training counts leave out every
    language's test speakers, gender counts also speakers with conflicting gender labels."""
    rules = rules or SpeakerRules()
    data = config["data"]
    test_cfg = data["test"]
    try:
        test_pool, train_pool = split_pools(manifest, data.get("split", "own"))
    except SelectionError:
        test_pool = train_pool = manifest.iloc[0:0]
    eligible_pool = test_pool[test_pool["gender"].isin(GENDERS) & ~test_pool["speaker"].isin(rules.no_gender)]
    per_speaker = eligible_pool.groupby(["gender", "speaker"]).size()
    eligible = {g: int((per_speaker.get(g, pd.Series(dtype=int)) >= test_cfg["min_clips_per_speaker"]).sum())
                for g in GENDERS}
    try:  # the test speakers, as selection picks them, so the training counts exclude them
        test_speakers = language_test_speakers(config, manifest, rules)
    except (SelectionError, IndexError):
        test_speakers = []
    rows = []
    for task, cfg in config["tasks"].items():
        if lang not in task_languages(config, task):
            continue
        try:
            select_language({**config, "tasks": {task: cfg}}, manifest, lang, rules)
            problem = ""
        except (SelectionError, TaskError) as err:
            problem = str(err)
        task_obj = make_task(task, cfg)
        train = train_pool[~train_pool["speaker"].isin(set(test_speakers) | rules.no_training | task_obj.excluded(rules))]
        row = {"language": lang, "task": task, "ready": not problem,
               "corpus_clips": len(manifest), "corpus_speakers": manifest["speaker"].nunique(),
               "test_speakers_needed_per_gender": test_cfg["speakers_per_gender"],
               "test_speakers_eligible_male": eligible["male"], "test_speakers_eligible_female": eligible["female"]}
        try:  # the task's own capacity rule: what it needs, what the pool gives
            row.update(task_capacity(task_obj, train))
        except TaskError as err:
            row.update(train_clips_needed="", train_clips_usable="", spare_clips=0)
            problem = problem or str(err)
            row["ready"] = False
        # what the corpus-wide speaker rules removed (shared, excluded_clips, mixed_gender_*), as selection counts it
        row.update(checks_columns({task: {"speaker_checks": speaker_checks(manifest, train_pool, test_speakers, rules)}}))
        row["problem"] = problem
        rows.append(row)
    return rows


def grid(config: dict) -> pd.DataFrame:
    """Runs per task: targets x (single, dual, one donor per other language) x seeds."""
    rows = []
    for task in config["tasks"]:
        langs = task_languages(config, task)
        per_target = len(conditions(config, task, langs[0]))
        rows.append({"task": task, "languages": len(langs), "conditions_per_target": per_target,
                     "seeds": len(task_seeds(config, task)),
                     "runs": len(langs) * per_target * len(task_seeds(config, task))})
    return pd.DataFrame(rows)


def preflight(config: dict, manifests: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(capacity table, grid table with costs, a text summary for people)."""
    try:
        rules = speaker_rules(config, manifests)
    except SelectionError:
        rules = {}
    capacity = pd.DataFrame([row for lang, m in manifests.items()
                             for row in language_capacity(config, m, lang, rules.get(lang))])
    runs = grid(config)
    per_run = (config.get("preflight") or {}).get("seconds_per_run") or {}
    runs["seconds_per_run"] = [per_run.get(t) for t in runs["task"]]
    runs["seconds_per_run"] = pd.to_numeric(runs["seconds_per_run"], errors="coerce")
    runs["gpu_hours"] = (runs["runs"] * runs["seconds_per_run"] / 3600).round(1)
    return capacity, runs, summary_text(config, capacity, runs)


def summary_text(config: dict, capacity: pd.DataFrame, runs: pd.DataFrame) -> str:
    corpus = config["corpus"]
    where = (corpus.get(corpus["type"]) or {})
    source = where.get("root") or where.get("path") or "synthetic demo"
    lines = [f"cltm preflight: {len(config['languages'])} languages from {corpus['type']} ({source}), "
             f"data.split {config['data'].get('split', 'own')}, encoder {config['encoder']['source']}", ""]
    short = capacity[~capacity["ready"]]
    if short.empty:
        lines.append("Data: every language can supply every task's regimes (metadata only; bad clips found "
                     "when audio is prepared are replaced from the spare clips listed in capacity.tsv).")
    else:
        lines.append(f"Data: NOT READY. {len(short)} language/task pair(s) cannot supply the requested regimes:")
        lines += [f"  - {p}" for p in short["problem"]]
    tight = capacity[capacity["ready"] & (capacity["spare_clips"] < 0.1 * capacity["spare_clips"].abs().max())]
    if not tight.empty and len(capacity) > 1:
        lines.append("Least spare training clips (to replace bad clips): "
                     + ", ".join(f"{r.language}/{r.task} {r.spare_clips}" for r in tight.itertuples()))
    lines.append("")
    lines.append("Grid:")
    for r in runs.itertuples():
        cost = (f"{r.runs} x {r.seconds_per_run:g} s = {r.gpu_hours:g} GPU hours" if math.isfinite(r.seconds_per_run)
                else "cost unknown: set preflight.seconds_per_run." + r.task)
        lines.append(f"  {r.task}: {r.languages} targets x {r.conditions_per_target} conditions x {r.seeds} seeds "
                     f"= {r.runs} runs; {cost}")
    total_runs = int(runs["runs"].sum())
    known = runs["seconds_per_run"].notna().all()
    lines.append(f"  total: {total_runs} runs" + (f", {runs['gpu_hours'].sum():.1f} GPU hours (one GPU per run)"
                                                   if known else ""))
    if not known:
        task = runs.loc[runs["seconds_per_run"].isna(), "task"].iloc[0]
        lang = task_languages(config, task)[0]
        cmd = MEASURE_COMMAND.format(run=run_path(task, lang, DUAL, task_seeds(config, task)[0]))
        lines += ["", "Measure the per-run cost once, on the hardware that will run the grid (one dual run: an "
                  "upper bound, single runs train on half the clips):", f"  {cmd}",
                  "then put its wall_s into preflight.seconds_per_run.<task> and rerun the preflight."]
    return "\n".join(lines) + "\n"
