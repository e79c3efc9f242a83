"""Tasks as small plug-ins over the shared trainer, and one run of the grid.

A task is one object (`task_kind(name, cfg)`) that owns what the rest of the tool asks about it: the
manifest columns it needs, its labels, its selection and capacity rules (what preflight checks), its
pooling and head, its evaluation and metric, and its display name. Two kinds cover the field:

- `classification`: utterance classification on any label column of the manifest (gender, age group,
  emotion, accent): `label_column`, the `classes` or a `label_map` from raw values to classes,
  `n_per_class` clips per class, macro-F1 (or accuracy) over all classes;
- `speaker_verification`: speaker-identification fine-tuning, cosine scoring of trials, ROC-AUC.

`tasks.<name>.kind` picks the kind; `gender` and `speaker` default to their historical kinds, so
existing configs need no change (and their selections, paths and run records stay as they were).

A run = (task, target, condition, seed). Its training set is nested: `single` = N clips of the
target, `dual` = single + N more of the target, `donor-<j>` = single + N clips of donor j (its
own `single` subset). Every run is evaluated on the same test set of the target.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from cltm.config import ConfigError
from cltm.runs import donor_of

KINDS = ("classification", "speaker_verification")

# the kind a task name implies when `kind` is not given (the two tasks the tool started with)
DEFAULT_KIND = {"gender": "classification", "speaker": "speaker_verification"}

# manifest columns every corpus reader writes; a label column cannot be one of them but `gender`
STANDARD_COLUMNS = ("utt_id", "path", "speaker", "gender", "language", "duration", "split", "gender_raw")

GENDER_CLASSES = ("male", "female")
GENDER_LABEL = {"male": 0, "female": 1}

# Common Voice's `age` values, youngest first (empty = not given)
CV_AGES = ("teens", "twenties", "thirties", "forties", "fifties", "sixties", "seventies", "eighties", "nineties")

# the documented default binning of Common Voice's age column (config/demo_age.yaml, README "Tasks")
AGE_GROUPS = {"teens": "under_30", "twenties": "under_30", "thirties": "30_to_59", "forties": "30_to_59",
              "fifties": "30_to_59", "sixties": "60_plus", "seventies": "60_plus", "eighties": "60_plus",
              "nineties": "60_plus"}

DISPLAY_NAMES = {"gender": "Gender identification", "speaker": "Speaker verification", "age": "Age group"}

# fine-tuning minutes per run on SLURM for mHuBERT-147 (paper: 20-60 min gender, 1-3 h speaker),
# used by the finetune rule's `runtime` (times the attempt); override with --set-resources
RUNTIME_MINUTES = {"classification": 30, "speaker_verification": 120}


class TaskError(ConfigError):
    """A task configured in a way the tool cannot run; the message names the key."""


def kind_of(name: str, cfg: dict) -> str:
    kind = (cfg or {}).get("kind") or DEFAULT_KIND.get(name)
    if kind is None:
        raise TaskError(f"config key 'tasks.{name}.kind' is required for a task not named gender or speaker: "
                        f"one of {', '.join(KINDS)}")
    if kind not in KINDS:
        raise TaskError(f"config key 'tasks.{name}.kind': '{kind}' is not one of {', '.join(KINDS)}")
    return kind


def task_kind(name: str, cfg: dict) -> "ClassificationTask | SpeakerVerificationTask":
    """The task object of `tasks.<name>` (a config section, read as it is: defaults are applied here,
    never written into the config, so that the settings digest of an existing task never changes)."""
    kind = kind_of(name, cfg)
    return (ClassificationTask if kind == "classification" else SpeakerVerificationTask)(name, cfg)


def tasks_of(config: dict) -> dict:
    """{name: task object} of every task in `config["tasks"]` that is enabled."""
    return {name: task_kind(name, cfg) for name, cfg in (config.get("tasks") or {}).items() if cfg is not None}


def label_columns(config: dict) -> dict[str, list[str]]:
    """The extra manifest columns the configured tasks read: {column: [task, ...]} (gender is standard)."""
    out: dict[str, list[str]] = {}
    for name, task in tasks_of(config).items():
        for col in task.columns:
            out.setdefault(col, []).append(name)
    return out


def _raw(values: pd.Series) -> pd.Series:
    return values.fillna("").astype(str).str.strip()


def training_items(target: str, condition: str, selections: dict[str, dict]) -> list[tuple[str, str]]:
    """(language, utt_id) pairs of a condition's training set."""
    items = [(target, u) for u in selections[target]["single"]]
    donor = donor_of(condition)
    if condition == "dual":
        items += [(target, u) for u in selections[target]["extra"]]
    elif donor is not None:
        if donor == target:
            raise ValueError(f"condition '{condition}' names the target itself; use 'dual'")
        items += [(donor, u) for u in selections[donor]["single"]]
    elif condition != "single":
        raise ValueError(f"unknown condition '{condition}' (use single, dual or donor-<language>)")
    return items


class _Task:
    kind = ""
    pooling = "last"

    def __init__(self, name: str, cfg: dict):
        self.name, self.cfg = name, dict(cfg or {})

    @property
    def display_name(self) -> str:
        return self.cfg.get("display_name") or DISPLAY_NAMES.get(self.name) or self.name.replace("_", " ").capitalize()

    @property
    def metric(self) -> str:
        return self.cfg.get("metric") or self.default_metric

    @property
    def runtime_minutes(self) -> int:
        return RUNTIME_MINUTES[self.kind]

    columns: tuple[str, ...] = ()

    def key(self, suffix: str) -> str:
        return f"tasks.{self.name}.{suffix}"


class ClassificationTask(_Task):
    """Utterance classification on a label column: mean pooling of the last layer, a k-way linear head,
    macro-F1 over the k classes (accuracy logged too).

    Labels are per speaker (`per_speaker: true`, the default: gender, age; a speaker whose clips carry two
    classes anywhere in the corpus is left out of the task, as gender has always done) or per utterance
    (`per_speaker: false`: emotion; a speaker has clips of several classes, and `single` and `extra` never
    share a speaker). Training subsets: `n_per_class` clips per class in `single` and as many more, from
    other speakers, in `extra`, at most `max_clips_per_speaker` per speaker and class. The test set is the
    language's shared test set (test speakers balanced by gender, the same for every task), restricted
    to the clips that carry one of the classes.
    """

    kind, default_metric, pooling = "classification", "macro_f1", "last"

    def __init__(self, name: str, cfg: dict):
        super().__init__(name, cfg)
        self.label_column = self.cfg.get("label_column") or ("gender" if name == "gender" else name)
        label_map = self.cfg.get("label_map")
        self.label_map = ({str(k).strip().lower(): (None if v is None else str(v)) for k, v in label_map.items()}
                          if label_map else None)
        classes = self.cfg.get("classes")
        if classes:
            self.classes = tuple(str(c) for c in classes)
        elif self.label_map:
            self.classes = tuple(dict.fromkeys(v for v in self.label_map.values() if v is not None))
        elif self.label_column == "gender":
            self.classes = GENDER_CLASSES
        else:
            raise TaskError(f"config key '{self.key('classes')}' (or '{self.key('label_map')}') is required: the "
                            f"classes of label column '{self.label_column}'")
        if len(self.classes) < 2:
            raise TaskError(f"config key '{self.key('classes')}': a classifier needs at least 2 classes, "
                            f"got {list(self.classes)}")
        if self.label_map:
            unknown = sorted({v for v in self.label_map.values() if v is not None} - set(self.classes))
            if unknown:
                raise TaskError(f"config key '{self.key('label_map')}' maps to {', '.join(unknown)}, which "
                                f"'{self.key('classes')}' does not list ({', '.join(self.classes)})")
        self.per_speaker = bool(self.cfg.get("per_speaker", True))
        self.n_per_class = self.cfg.get("n_per_class")
        self.max_clips_per_speaker = self.cfg.get("max_clips_per_speaker")
        self.columns = () if self.label_column == "gender" else (self.label_column,)
        self.index = {c: i for i, c in enumerate(self.classes)}

    @property
    def is_gender(self) -> bool:
        """On the manifest's normalised gender column: the corpus-wide `no_gender` rule applies."""
        return self.label_column == "gender"

    def class_of(self, values: pd.Series) -> pd.Series:
        """Each raw label value's class, "" where it has none (empty, unmapped, or mapped to null)."""
        raw = _raw(values).str.lower()
        if self.label_map is not None:
            return raw.map(lambda v: self.label_map.get(v) or "")
        lookup = {c.lower(): c for c in self.classes}  # matched case-insensitively, like a map's keys
        return raw.map(lambda v: lookup.get(v, ""))

    def labelled(self, manifest: pd.DataFrame) -> pd.Series:
        if self.label_column not in manifest.columns:
            lang = manifest["language"].iloc[0] if len(manifest) else "?"
            raise TaskError(f"task '{self.name}' needs the column '{self.label_column}' ({self.key('label_column')}), "
                            f"but the manifest of language '{lang}' has none")
        return self.class_of(manifest[self.label_column])

    def unrecognised(self, manifest: pd.DataFrame) -> str:
        """For an error message: raw values of the label column that gave no class, and how to map them."""
        if self.is_gender and not self.label_map:
            from cltm.sampling import unrecognised_genders

            return unrecognised_genders(manifest)
        raw = _raw(manifest[self.label_column])
        counts = raw[(raw != "") & (self.labelled(manifest) == "")].value_counts()
        if counts.empty:
            return ""
        return (". Values of column '" + self.label_column + "' without a class: "
                + ", ".join(f"'{v}' ({n} clips)" for v, n in counts.head(10).items())
                + f"; map them with {self.key('label_map')}")

    # ------------------------------------------------------------------ selection

    def excluded(self, rules) -> frozenset:
        """Speakers left out of this task's sets: mixed-label speakers (per-speaker labels only)."""
        if not self.per_speaker:
            return frozenset()
        return rules.no_gender if self.is_gender else frozenset(rules.no_label.get(self.name, ()))

    def select(self, manifest: pd.DataFrame, train_pool: pd.DataFrame, test_spk: list, test: list, rules,
               seed: int) -> tuple[list, dict]:
        """(this task's test clips, {single, extra[, mixed_label_speakers]})."""
        from cltm.sampling import SelectionError, select_classes

        lang = manifest["language"].iloc[0]
        mixed = self.excluded(rules)
        subsets = select_classes(train_pool, test_spk, self.labelled(train_pool), self.classes, task=self.name,
                                 n_per_class=self.n_per_class, max_clips_per_speaker=self.max_clips_per_speaker,
                                 seed=seed, exclude=rules.no_training | mixed, per_speaker=self.per_speaker,
                                 keys=(lang, self.name), hint=lambda: self.unrecognised(manifest))
        if self.is_gender and not self.label_map and self.classes == GENDER_CLASSES:
            return test, subsets  # test speakers are picked by gender: every test clip of theirs is labelled
        rows = manifest[manifest["utt_id"].isin(test)]
        classes = self.labelled(rows)
        keep = rows[(classes != "") & ~rows["speaker"].isin(mixed)]
        have = set(classes[keep.index])
        missing = [c for c in self.classes if c not in have]
        if missing:
            raise SelectionError(
                f"language '{lang}', task {self.name}: the test set has no clip of class(es) "
                f"{', '.join(missing)} (the test speakers, {len(test_spk)}, are picked balanced by gender, the "
                f"same for every task; {len(keep)} of their {len(rows)} clips carry a class of "
                f"'{self.label_column}'); raise data.test.speakers_per_gender" + self.unrecognised(manifest))
        if self.per_speaker and not self.is_gender:
            subsets["mixed_label_speakers"] = sorted(mixed & set(manifest["speaker"]))
        return sorted(keep["utt_id"]), subsets

    def capacity(self, train: pd.DataFrame) -> dict:
        """What preflight shows for this task: training clips needed, usable per class, and the spare."""
        from cltm.preflight import _usable

        classes = self.labelled(train)
        need = 2 * self.n_per_class
        usable = {c: _usable(train[classes == c], self.max_clips_per_speaker) for c in self.classes}
        return {"train_clips_needed": f"{need} per class",
                "train_clips_usable": ", ".join(f"{usable[c]} {c}" for c in self.classes),
                "spare_clips": min(usable.values()) - need}

    # ------------------------------------------------------------------ training and evaluation

    def labels(self, metas: list[pd.Series], items) -> tuple[np.ndarray, int]:
        values = pd.Series([m[self.label_column] for m in metas], dtype=object)
        classes = self.class_of(values)
        if (classes == "").any():
            first = values[classes == ""].iloc[0]
            raise ValueError(f"a {self.name} training clip has no class of {', '.join(self.classes)} "
                             f"(column '{self.label_column}': '{first}')")
        return np.array([self.index[c] for c in classes]), len(self.classes)

    def evaluate(self, model, store, selection: dict, cfg: dict, device) -> tuple[dict, pd.DataFrame]:
        from cltm.training import precision_of, predict_proba

        test = selection["test"]
        return self.score(store, test, predict_proba(model, [store[u] for u in test], device,
                                                     precision_of(cfg.get("training") or {})))

    def score(self, store, test: list, proba: np.ndarray) -> tuple[dict, pd.DataFrame]:
        """(metrics, per-clip predictions) of class probabilities `proba` [clips, classes] of the test clips
        (`store.meta` gives their labels): shared by fine-tuning and probe runs."""
        from cltm.metrics import classification_metrics

        classes = self.class_of(pd.Series([store.meta(u)[self.label_column] for u in test], dtype=object))
        y_true = np.array([self.index[c] for c in classes])
        y_pred = proba.argmax(axis=1)
        metrics = classification_metrics(y_true, y_pred, n_classes=len(self.classes))
        if self.is_gender and self.classes == GENDER_CLASSES:  # the columns gender runs have always written
            return metrics, pd.DataFrame({"utt_id": test, "label": y_true, "predicted": y_pred, "p_female": proba[:, 1]})
        scores = pd.DataFrame({"utt_id": test, "label": [self.classes[i] for i in y_true],
                               "predicted": [self.classes[i] for i in y_pred]})
        for i, c in enumerate(self.classes):
            scores[f"p_{c}"] = proba[:, i]
        return metrics, scores


_TRIALS: dict = {}


def _trial_columns(test: list, trials: list) -> tuple:
    """The trial list's columns (enroll, test: Series, as pandas infers them; label: an int64 array) and
    the rows of its enrolment and test clips in `test` (torch int64), kept for the trial list's life: the
    runs of a process that score one language's trials (a probe sweep: 340 of them) build them once.
    Cheaper than a DataFrame of the list and pandas' map, which cost a probe run more than its metrics."""
    key = id(trials)
    hit = _TRIALS.get(key)
    if hit is not None and hit[0] is trials and hit[1] == test and len(hit[2][0]) == len(trials):
        return hit[2]
    import torch

    pos = {u: i for i, u in enumerate(test)}
    enroll, other, label = (list(c) for c in zip(*trials)) if trials else ([], [], [])
    cols = (pd.Series(enroll), pd.Series(other), np.array(label, dtype=np.int64),
            torch.from_numpy(np.fromiter((pos[u] for u in enroll), np.int64, len(enroll))),
            torch.from_numpy(np.fromiter((pos[u] for u in other), np.int64, len(other))))
    if len(_TRIALS) > 256:
        _TRIALS.clear()
    _TRIALS[key] = (trials, list(test), cols)
    return cols


class SpeakerVerificationTask(_Task):
    """Speaker verification via speaker-identification fine-tuning; cosine scoring of embeddings."""

    kind, default_metric, pooling = "speaker_verification", "roc_auc", "last4"

    def select(self, manifest: pd.DataFrame, train_pool: pd.DataFrame, test_spk: list, test: list, rules,
               seed: int) -> tuple[list, dict]:
        from cltm.sampling import make_trials, select_speaker

        cfg = self.cfg
        subsets = select_speaker(train_pool, test_spk, n_utterances=cfg["n_utterances"],
                                 max_utterances_per_speaker=cfg["max_utterances_per_speaker"],
                                 min_speaker_fraction=cfg["min_speaker_fraction"], seed=seed,
                                 exclude=rules.no_training, task=self.name)
        rows = manifest[manifest["utt_id"].isin(test)]
        trials = make_trials(rows, max_positives_per_speaker=cfg["max_positives_per_speaker"], seed=seed)
        subsets["trials"] = trials.values.tolist()
        return test, subsets

    def excluded(self, rules) -> frozenset:
        return frozenset()

    def capacity(self, train: pd.DataFrame) -> dict:
        from cltm.preflight import _usable

        need = 2 * self.cfg["n_utterances"]
        usable = _usable(train, self.cfg["max_utterances_per_speaker"])
        return {"train_clips_needed": str(need),
                "train_clips_usable": f"{usable} from {train['speaker'].nunique()} speakers",
                "spare_clips": usable - need}

    def labels(self, metas: list[pd.Series], items) -> tuple[np.ndarray, int]:
        # speakers are keyed by language too: donor speakers are extra classes, never merged
        keys = [f"{lang}/{m['speaker']}" for (lang, _), m in zip(items, metas)]
        classes = {k: i for i, k in enumerate(sorted(set(keys)))}
        return np.array([classes[k] for k in keys]), len(classes)

    def evaluate(self, model, store, selection: dict, cfg: dict, device) -> tuple[dict, pd.DataFrame]:
        from cltm.audio import trim_silence
        from cltm.training import embed_clips, precision_of

        test = selection["test"]
        waves = [trim_silence(store[u], cfg.get("trim_db")) for u in test]
        return self.score(test, embed_clips(model, waves, device, precision_of(cfg.get("training") or {})),
                          selection)

    def score(self, test: list, embeddings, selection: dict) -> tuple[dict, pd.DataFrame]:
        """(metrics, trials with their cosine scores) of the test clips' embeddings [clips, dim] (a torch
        tensor): shared by fine-tuning and probe runs."""
        import torch

        from cltm.metrics import verification_metrics

        emb = torch.nn.functional.normalize(embeddings, dim=-1)
        enroll, other, label, ia, ib = _trial_columns(test, selection["trials"])
        trials = pd.DataFrame({"enroll": enroll, "test": other,
                               "score": (emb[ia] * emb[ib]).sum(dim=-1).numpy().astype(float), "label": label})
        metrics = verification_metrics(trials["score"].to_numpy(), trials["label"].to_numpy())
        return metrics, trials


def pick_device(name: str = "auto"):
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config key 'device' is 'cuda' but no CUDA device is visible to this job")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def run_one(task: str, cfg: dict, *, target: str, condition: str, seed: int, encoder: torch.nn.Module,
            stores: dict, selections: dict[str, dict], device,
            sample_rate: int = 16000, log=print, checkpoint=None) -> tuple[dict, pd.DataFrame | None]:
    """Fine-tune `encoder` (consumed: pass a fresh copy) on the condition's training set, evaluate on the
    target's test set; return the run record and its per-item scores. `checkpoint` (a
    `cltm.checkpoints.Checkpoint`) makes the training resumable."""

    from cltm.rng import RunGenerators
    from cltm.training import Classifier, fine_tune, precision_of

    t0 = time.perf_counter()
    plugin = task_kind(task, cfg)
    items = training_items(target, condition, selections)
    metas = [stores[lang].meta(u) for lang, u in items]
    labels, n_classes = plugin.labels(metas, items)
    waves = [stores[lang][u] for lang, u in items]
    log(f"{task} {target} {condition} seed {seed}: {len(items)} training clips, {n_classes} classes, device {device}")

    # the run's own generators (cltm.rng): head init, dropout, LayerDrop and time masking draw as if alone
    generators = RunGenerators(seed, device)
    with generators.active():
        model = Classifier(encoder, n_classes, plugin.pooling)
        loss = fine_tune(model, waves, labels, cfg["training"], seed=seed, device=device, sample_rate=sample_rate,
                         log=log, checkpoint=checkpoint)
        t_train = time.perf_counter() - t0
        metrics, scores = plugin.evaluate(model, stores[target], selections[target], cfg, device)
    log(f"{task} {target} {condition} seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))

    record = run_record(plugin, task=task, target=target, condition=condition, seed=seed, metrics=metrics,
                        items=items, metas=metas, train_samples=sum(w.size for w in waves), n_classes=n_classes,
                        selections=selections, loss=loss, sample_rate=sample_rate,
                        timing={"train_s": round(t_train, 2), "eval_s": round(time.perf_counter() - t0 - t_train, 2)},
                        device=str(device), precision=precision_of(cfg["training"]))
    return record, scores


def run_record(plugin, *, task: str, target: str, condition: str, seed: int, metrics: dict, items, metas,
               train_samples: int, n_classes: int, selections: dict, loss: dict, sample_rate: int, timing: dict,
               device: str, precision: str) -> dict:
    """A run's record, the same fields whichever mode made it (fine-tuning here, `cltm.probe`)."""
    import torch

    from cltm import __version__

    target_clips = sum(1 for lang, _ in items if lang == target)
    return {
        "task": task, "target": target, "condition": condition, "donor": donor_of(condition), "seed": seed,
        "metric": plugin.metric, "value": metrics[plugin.metric], "metrics": metrics,
        "sizes": {
            "train_clips": len(items), "target_clips": target_clips, "donor_clips": len(items) - target_clips,
            "train_speakers": len({(lang, m["speaker"]) for (lang, _), m in zip(items, metas)}),
            "train_seconds": round(train_samples / sample_rate, 2),
            "classes": n_classes, "test_clips": len(selections[target]["test"]),
            "test_speakers": len(selections[target]["test_speakers"]),
            "trials": len(selections[target].get("trials", [])),
        },
        "loss": loss, "timing": timing, "device": device, "precision": precision, "torch": torch.__version__,
        "cltm": __version__,
    }
