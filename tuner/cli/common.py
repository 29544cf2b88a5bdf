"""What every command shares: the consoles, the one-line error handling, common options."""

from __future__ import annotations

import functools
import shutil
import sys
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
FormatOpt = Annotated[
    str,
    typer.Option(
        "--format",
        help="table (fits the terminal; plain text when piped) | csv | json | markdown.",
    ),
]


class Startup:
    """One transient line saying what a command is doing before its first output: a spinner
    on a terminal, nothing when piped (so a one-line error stays one line)."""

    def __init__(self, text: str):
        self.text = text
        self.status: Any = None

    def __enter__(self) -> Startup:
        if err.is_terminal:
            self.status = err.status(self.text)
            self.status.start()
        return self

    def __call__(self, text: str) -> None:
        if self.status is not None:
            self.status.update(text)

    def __exit__(self, *exc: Any) -> None:
        if self.status is not None:
            self.status.stop()


def print_table(table: Any, fmt: str) -> None:
    """A tuner.tables.Table on stdout: fitted and coloured in a terminal, else as text."""
    from tuner.tableformat import render_text, terminal

    if fmt == "table" and out.is_terminal:
        width = shutil.get_terminal_size((out.width, 24)).columns
        out.print(terminal(table, width), crop=False, soft_wrap=True, highlight=False)
    else:
        sys.stdout.write(render_text(table, fmt))
        sys.stdout.flush()


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
