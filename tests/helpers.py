"""Shared test helpers: write a tiny search space and run the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
