"""The experiment configuration: validation (`validate`), what a valid config means (`settings`), the
workflow's targets (`targets`) and the record of the config files a results/ folder was made with
(`record`). `python -m cltm.config FILE...` checks config files."""

from cltm.config.settings import (DEMO_LANGUAGES, all_languages, analysis_settings, canonical, conditions, digest,
                                  draw_seeds, drop_disabled_tasks, enabled_tasks, encoder_settings, encoder_source_kind,
                                  expand_twins, is_synthetic, ladder_sizes, matrix_settings, merge, planted_tasks,
                                  plant_settings, run_settings, selection_config, task_label_column,
                                  task_languages, task_resample, task_seeds, task_size, twins)
from cltm.config.validate import (SCHEMA_PATH, ConfigError, check_files, check_paths, load_schema, validate_config,
                                  yaml_error_message)

__all__ = ["DEMO_LANGUAGES", "SCHEMA_PATH", "ConfigError", "all_languages", "analysis_settings", "canonical",
           "check_files", "check_paths", "conditions", "digest", "draw_seeds", "drop_disabled_tasks", "enabled_tasks",
           "encoder_settings", "encoder_source_kind", "expand_twins", "is_synthetic", "ladder_sizes", "load_schema",
           "matrix_settings", "merge", "plant_settings", "planted_tasks", "run_settings", "selection_config",
           "task_label_column", "task_languages", "task_resample", "task_seeds", "task_size", "twins",
           "validate_config", "yaml_error_message"]
