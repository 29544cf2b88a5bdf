"""What every command shares: the consoles, the one-line error handling, common options,
and SIGTERM handled like Ctrl-C."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

try:  # typer 0.2x carries its own copy of click
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older typer on click
    from click import exceptions as click_errors  # type: ignore[no-redef]

from tuner.errors import SPAWNED_WORKER_ENV, TunerError

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
GpusOpt = Annotated[
    str | None,
    typer.Option(
        "--gpus",
        help="CUDA devices to spread the workers over, round robin (e.g. 0,1); "
        "workers that share a device split its memory.",
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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so it unwinds exactly as Ctrl-C does: the trial
    ends FAIL "interrupted", its MLflow run KILLED, and the study stays resumable."""


def _on_signal(signum: int, frame: Any) -> None:
    signal.signal(signum, signal.SIG_IGN)  # a second one must not cut the cleanup
    raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt


def handle_signals() -> None:
    """Turn SIGTERM into `Terminated` in this process (main thread only, as Python requires);
    in a spawned worker, a second SIGINT is ignored as well (unless SIGINT is ignored
    altogether, as in a background job: then the worker ignores it like its command)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_signal)
        interruptible = signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
        if os.environ.get(SPAWNED_WORKER_ENV) and interruptible:
            signal.signal(signal.SIGINT, _on_signal)


def user_errors(fn: Callable) -> Callable:
    """A TunerError becomes one line on stderr and its exit code (2 for bad input); Ctrl-C
    exits 130 and SIGTERM 143, with a hint to resume; a store or file failure that escaped
    its command's own checks is still one line (exit 1)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        handle_signals()
        try:
            return fn(*args, **kwargs)
        except TunerError as e:
            _fail(str(e), e.exit_code)
        except KeyboardInterrupt as e:
            what, code = ("terminated", 143) if isinstance(e, Terminated) else ("interrupted", 130)
            if os.environ.get(SPAWNED_WORKER_ENV):  # the command that started it says it
                raise typer.Exit(code) from None
            name = kwargs.get("name")
            hint = f"; continue with `tuner study resume {name}`" if name else ""
            err.print(f"{what}{hint}", highlight=False, soft_wrap=True)
            raise typer.Exit(code) from None
        except (OSError, Exception) as e:
            line = _escaped(e)
            if line is None:
                raise
            _fail(line, 1)

    return wrapper


def _fail(message: str, code: int) -> None:
    err.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code) from None


def _escaped(e: BaseException) -> str | None:
    """One line for a store failure or an unwritable/full disk that no check caught first."""
    from tuner.failures import describe, store_failure

    found = store_failure(e)
    if found is None:
        return None
    if isinstance(found, OSError) and found.filename:
        return f"{found.filename}: {describe(found)}"
    return f"store failure: {describe(found)}"


class OneLineGroup(TyperGroup):
    """The top `tuner` group: a usage error (unknown option, bad flag value, missing
    argument) is one line and exit code 2, like every other bad input."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click_errors.NoArgsIsHelpError as e:
            e.show()
            sys.exit(e.exit_code)
        except click_errors.UsageError as e:
            where = e.ctx.command_path if e.ctx else "tuner"
            err.print(
                f"error: {where}: {e.format_message()} (see --help)",
                highlight=False,
                soft_wrap=True,
                markup=False,
            )
            sys.exit(2)
        except click_errors.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except typer.Abort:
            err.print("aborted")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)
