"""Library chatter kept out of tuner's output; their warnings and errors still get through.

- MLflow logs two INFO lines when it creates or migrates its database (a first run prints
  "Creating initial MLflow database tables..."): tuner says what start-up does itself.
- Against a tracking server, MLflow writes "View run ... at: URL" and "View experiment at:
  URL" to stdout as every run ends (a REST call each, and two lines through tuner's progress
  output per trial); tuner says the experiment's URL once, at the end of a study.
- Optuna warns that the features tuner picks on purpose (heartbeats, the retry of lost trials,
  some samplers) are experimental. `experimental_ok` silences that one warning around the
  call that chooses them, so it also holds under `python -W default` or pytest, which reset
  process-wide filters.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

CHATTY_LOGGERS = ("mlflow.store.db.utils",)
"""Loggers whose INFO lines are start-up noise (their warnings and errors are kept)."""


def quiet_logs() -> None:
    """Raise the chatty loggers to WARNING; an explicit MLFLOW_LOGGING_LEVEL=DEBUG keeps them.
    MLflow's run URLs stay unprinted unless MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT=false is
    set (worker processes inherit the setting)."""
    import os

    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    if os.environ.get("MLFLOW_LOGGING_LEVEL", "").upper() == "DEBUG":
        return
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


@contextmanager
def experimental_ok() -> Iterator[None]:
    """Silence Optuna's ExperimentalWarning for a feature tuner chooses on purpose."""
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        yield
