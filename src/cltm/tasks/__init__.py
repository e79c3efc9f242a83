"""Tasks as small plug-ins: the registry (`make_task`), the two kinds and their metrics."""

from cltm.tasks.base import Task, TaskError
from cltm.tasks.classification import AGE_GROUPS, ClassificationTask
from cltm.tasks.registry import (DEFAULT_KIND, KINDS, STANDARD_COLUMNS, configured_tasks, kind_of, label_columns,
                                 make_task)
from cltm.tasks.verification import SpeakerVerificationTask

__all__ = ["AGE_GROUPS", "DEFAULT_KIND", "KINDS", "STANDARD_COLUMNS", "ClassificationTask", "SpeakerVerificationTask",
           "Task", "TaskError", "configured_tasks", "kind_of", "label_columns", "make_task"]
