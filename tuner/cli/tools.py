"""`tuner optuna-dashboard`: the tools Optuna users know, on tuner's stores."""

from __future__ import annotations

from typing import Annotated

import typer

from tuner.cli.common import StorageOpt, out, user_errors


@user_errors
def optuna_dashboard(
    name: Annotated[str, typer.Argument(help="Study to open.")],
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8080,
    host: Annotated[
        str, typer.Option(help="Address to bind; 127.0.0.1 keeps it local.")
    ] = "127.0.0.1",
    storage: StorageOpt = None,
) -> None:
    """Serve Optuna's dashboard on a study (needs the extra: pip install 'tuner\\[dashboard]')."""
    from tuner.optuna_dash import serve_dashboard

    def ready(url: str) -> None:
        line = f"Optuna dashboard for study {name} on {url}; Ctrl-C to stop"
        out.print(line, highlight=False, soft_wrap=True)

    serve_dashboard(name, storage, host, port, on_ready=ready)
