"""The one base class of the problems a user can fix from the message alone (a config key, a corpus file,
a damaged run), so that a workflow script reports them in one line instead of a traceback.

Each domain defines its own error next to its code (`ConfigError` in config, `CorpusError` in corpora,
`AudioError` in audio, ...) as a subclass of `CltmError`; `cltm.io.run_script` catches only this base, so
the small helpers in `io` import nothing from the domain modules.
"""

from __future__ import annotations


class CltmError(ValueError):
    """A data, config or results problem whose message says what is wrong and how to fix it.

    A ValueError, so callers that catch ValueError (the config checks, the tests) keep working."""


class ConfigError(CltmError):
    """A configuration value the workflow cannot run with; the message names the key.

    Defined here, below every layer that checks a setting (tasks, config, model), so that each of them
    can raise it without importing the others."""
