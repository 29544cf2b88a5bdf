"""What every command shares: the consoles, the one-line error handling, common options."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from tuner.errors import TunerError

out = Console()
err = Console(stderr=True)

StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        help="Optuna storage URL "
        "(default: sqlite:///mlruns/optuna.db; a path ending in .log is a journal file).",
    ),
]
TrackingOpt = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db).",
    ),
]


def user_errors(fn: Callable) -> Callable:
    """A TunerError becomes one line on stderr and its exit code (2 for bad input); Ctrl-C
    becomes exit 130 with a hint to resume."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TunerError as e:
            err.print(f"[red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            name = kwargs.get("name")
            hint = f"; continue with `tuner study resume {name}`" if name else ""
            err.print(f"interrupted{hint}")
            raise typer.Exit(130) from None

    return wrapper
