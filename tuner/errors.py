"""The errors tuner shows a user as one line. Anything else is a bug and keeps its traceback.

`ConfigError` is bad input (exit code 2, nothing written); the others are things that went
wrong while working (a store that cannot be reached, a training run that could not finish)
and exit with 1.
"""

from __future__ import annotations


class TunerError(Exception):
    """An error the CLI prints as one line; `exit_code` is what the process exits with."""

    exit_code = 1


class ConfigError(TunerError, ValueError):
    """Bad user input: the message names what is wrong and where (file, key, flag)."""

    exit_code = 2


class StoreError(TunerError):
    """An Optuna or MLflow store failed: unreachable, locked, corrupt, full, read-only."""


class TrainingError(TunerError):
    """A final training that could not finish (diverged, out of memory)."""


SPAWNED_WORKER_ENV = "TUNER_SPAWNED_WORKER"
"""Set in the workers a command starts beside itself (`--workers K`). The command speaks for
them: on Ctrl-C (which reaches them from the terminal and again from the command) they say
nothing and let no second signal cut their cleanup."""
