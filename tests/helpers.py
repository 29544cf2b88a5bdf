"""Shared test helpers: write a tiny search space and run the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from typer.testing import CliRunner

from tests.conftest import TINY_BASE
from tuner.cli import app


def write_space(path: Path, params: dict[str, Any] | None = None, **top: Any) -> Path:
    """A micro search space: tiny corpus slice, nano GPT-2, 8k tokens a trial."""
    space = {
        "name": "micro",
        "description": "test space",
        "base": TINY_BASE,
        "objective": {"metric": "val_loss", "direction": "minimize"},
        "sampler": "random",
        "pruner": "none",
        "n_trials": 3,
        "seed": 0,
        "params": params
        if params is not None
        else {
            "learning_rate": {"low": 1e-3, "high": 1e-2, "log": True, "grid": [1e-3, 1e-2]},
            "batch_size": {"choices": [4, 8]},
        },
    }
    space.update(top)
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def cli(*args: str):
    """Run `tuner ARGS` in-process; returns the click Result (exit_code, output)."""
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@contextmanager
def project(root: Path, cache: Path) -> Iterator[pytest.MonkeyPatch]:
    """A module-scoped fixture's own tuner project in `root` (stores in root/mlruns, the
    session's token cache), as the working folder; torch's thread count restored after (a
    trial sets it from train.threads)."""
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TUNER_HOME", str(root / "mlruns"))
        mp.setenv("TUNER_CACHE_DIR", str(cache))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.chdir(root)
        yield mp
    torch.set_num_threads(threads)
