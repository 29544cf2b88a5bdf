"""Where things live: the default local store under ./mlruns and the URLs that replace it.

Layout of the local store (TUNER_HOME, default ./mlruns):
    optuna.db     Optuna storage (SQLite)
    mlflow.db     MLflow backend (SQLite)
    artifacts/    MLflow artifacts
    cache/        tokenizers and token arrays, shared by all trials and workers
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from tuner.config import ConfigError

STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def home() -> Path:
    return Path(os.environ.get("TUNER_HOME", "mlruns")).resolve()


def cache_dir() -> Path:
    return Path(os.environ.get("TUNER_CACHE_DIR", home() / "cache")).resolve()


def default_storage() -> str:
    return f"sqlite:///{home() / 'optuna.db'}"


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home() / 'mlflow.db'}"


def artifact_root() -> str:
    return (home() / "artifacts").as_uri()


def check_study_name(name: str) -> str:
    """Study names become experiment names and file names: letters, digits, `_.-` only."""
    if not STUDY_NAME.match(name) or ".." in name:
        raise ConfigError(
            f"study name {name!r}: use letters, digits, '_', '.', '-' "
            "(no path separators), at most 100 characters"
        )
    return name


def ensure_local(url: str) -> None:
    """Create the folder of a local SQLite or journal file store before first use."""
    path = None
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
    elif "://" not in url:
        path = Path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
