"""Classification tasks: an utterance label (gender, age group, emotion, accent) predicted from the encoder."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cltm.tasks.base import Task, TaskError, label_strings
from cltm.tasks.labels import GENDERS, unrecognised_genders

GENDER_CLASSES = GENDERS

# the documented default binning of Common Voice's age column (config/demo_age.yaml, docs/tasks.md "Age group")
AGE_GROUPS = {"teens": "under_30", "twenties": "under_30", "thirties": "30_to_59", "forties": "30_to_59",
              "fifties": "30_to_59", "sixties": "60_plus", "seventies": "60_plus", "eighties": "60_plus",
              "nineties": "60_plus"}


class ClassificationTask(Task):
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
        if self.metric == "roc_auc" and len(self.classes) != 2:
            raise TaskError(f"config key '{self.key('metric')}': roc_auc ranks two classes, but "
                            f"'{self.key('classes')}' has {len(self.classes)} ({', '.join(self.classes)}): use "
                            "macro_f1 or accuracy")
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
        raw = label_strings(values).str.lower()
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
            return unrecognised_genders(manifest)
        raw = label_strings(manifest[self.label_column])
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

    # ------------------------------------------------------------------ training and evaluation

    def labels(self, metas: list[pd.Series], items) -> tuple[np.ndarray, int]:
        values = pd.Series([m[self.label_column] for m in metas], dtype=object)
        classes = self.class_of(values)
        if (classes == "").any():
            first = values[classes == ""].iloc[0]
            raise ValueError(f"a {self.name} training clip has no class of {', '.join(self.classes)} "
                             f"(column '{self.label_column}': '{first}')")
        return np.array([self.index[c] for c in classes]), len(self.classes)

    def score(self, store, test: list, proba: np.ndarray) -> tuple[dict, pd.DataFrame]:
        """(metrics, per-clip predictions) of class probabilities `proba` [clips, classes] of the test clips
        (`store.meta` gives their labels): shared by fine-tuning and probe runs."""
        # here, not at the top: scikit-learn stays unloaded where tasks are only planned (Snakemake, the client)
        from cltm.tasks.metrics import binary_auc, classification_metrics

        classes = self.class_of(pd.Series([store.meta(u)[self.label_column] for u in test], dtype=object))
        y_true = np.array([self.index[c] for c in classes])
        y_pred = proba.argmax(axis=1)
        metrics = classification_metrics(y_true, y_pred, n_classes=len(self.classes))
        if len(self.classes) == 2:  # threshold-free: how well the model ranks the second class above the first
            metrics["roc_auc"] = binary_auc(y_true, proba[:, 1])
        if self.is_gender and self.classes == GENDER_CLASSES:  # the columns gender runs have always written
            return metrics, pd.DataFrame({"utt_id": test, "label": y_true, "predicted": y_pred, "p_female": proba[:, 1]})
        scores = pd.DataFrame({"utt_id": test, "label": [self.classes[i] for i in y_true],
                               "predicted": [self.classes[i] for i in y_pred]})
        for i, c in enumerate(self.classes):
            scores[f"p_{c}"] = proba[:, i]
        return metrics, scores
