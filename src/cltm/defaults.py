"""Every default value of an optional setting, in one place.

A default is applied where the setting is read, never written into a config, so that a task's settings
digest (and with it every kept run) is unchanged when a default is only restated or moved here.
"""

from __future__ import annotations

# tasks.<task>.probe: the head of a probe run, per task kind (docs/tasks.md, "Probe mode")
PROBE = {
    "classification": {"stats": ["mean"], "normalize": True, "epochs": 50, "min_steps": 50, "batch_size": None,
                       "lr": 1e-2, "weight_decay": 1e-2},
    "speaker_verification": {"stats": ["mean", "std"], "normalize": True, "embedding_dim": 128, "epochs": 5,
                             "min_steps": 80, "batch_size": 128, "lr": 5e-3, "weight_decay": 1e-2},
}

# data.clip_checks: when a decoded clip is dropped (docs/data.md, "Bad clips")
CLIP_CHECKS = {"min_seconds": 1.0, "silence_dbfs": -50.0, "max_shortfall": 0.2}

# matrix: how a row is flagged and the level of each cell's interval (docs/statistics.md)
MATRIX = {"flag_alpha": 0.05, "ci_level": 0.95, "allow_mixed_versions": False}

# analysis: the reading of a matrix (docs/statistics.md)
ANALYSIS = {
    "language_names": False,
    "languages_info": {},
    "top_k": 5,
    "cluster_method": "average",
    "typology": {"distances": ["genetic", "geographic", "syntactic", "phonological", "inventory", "featural"],
                 "permutations": 9999, "seed": 0, "alternative": "less"},
    "seed_planning": {"cell_se": 0.1},
    "learning_curve": {"factors": [0.25, 0.5, 1.0], "seeds": [1, 2, 3]},
    # the planted known answer of the demo corpus (docs/statistics.md, "The known answer"): what recovering it
    # means. Mantel p at most this; `all` adjacent cells > 0 (or a share); the share of opposite cells < 0
    # strictly above this; at most this many flagged rows
    "known_answer": {"max_mantel_p": 0.01, "adjacent_positive": "all", "min_opposite_negative": 0.5,
                     "max_flagged_rows": 1},
}


# fine-tuning minutes per run on SLURM for mHuBERT-147 (paper: 20-60 min gender, 1-3 h speaker), per task
# kind: the finetune rule's `runtime` (times the attempt); override with --set-resources
RUNTIME_MINUTES = {"classification": 30, "speaker_verification": 120}
