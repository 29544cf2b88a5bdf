"""`tuner ui` and `tuner dashboard`: browse what the studies wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tuner import stores
from tuner.cli.common import StorageOpt, TrackingOpt, err, out, user_errors

UI_LINKS = 5
"""Newest tuner experiments `tuner ui` links to, opened on their training runs."""


@user_errors
def ui(
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 5000,
    host: Annotated[
        str, typer.Option(help="Address to bind; 127.0.0.1 keeps it local.")
    ] = "127.0.0.1",
    workers: Annotated[int, typer.Option(help="Server worker processes.")] = 1,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Start the MLflow UI on the project's store; Ctrl-C (or SIGTERM) stops all of it."""
    from tuner.mlflow_ui import experiment_url
    from tuner.ui_server import check_port, serve, tuner_experiments

    uri = tracking_uri or stores.default_tracking_uri()
    check_port(host, port)  # before anything is opened or written
    studies = tuner_experiments(uri)

    def ready(base: str) -> None:
        out.print(
            f"MLflow UI on {base} (store {uri}); Ctrl-C to stop", highlight=False, soft_wrap=True
        )
        for name, experiment_id in studies[:UI_LINKS]:
            out.print(
                f"  {name}: {experiment_url(base, experiment_id)}", highlight=False, soft_wrap=True
            )

    def stopping() -> None:
        err.print("stopping the MLflow UI ...", highlight=False)

    raise typer.Exit(serve(uri, host, port, workers, on_ready=ready, on_stop=stopping))


@user_errors
def dashboard(
    name: Annotated[str, typer.Argument(help="Study to draw.")],
    output: Annotated[
        str | None,
        typer.Option("-o", "--output", help="HTML file to write (default: dashboards/NAME.html)."),
    ] = None,
    open_: Annotated[bool, typer.Option("--open", help="Open the page in a browser.")] = False,
    mlflow: Annotated[
        bool,
        typer.Option("--mlflow/--no-mlflow", help="Attach the page to the study's MLflow run."),
    ] = True,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Draw a study as one self-contained HTML page (perplexity against size and cost, ...)."""
    from tuner.files import make_parent
    from tuner.page import log_dashboard, write_dashboard
    from tuner.study import load_study

    if output:  # an unwritable -o is said before any work (missing folders are created)
        make_parent(Path(output), "-o")
    handle = load_study(name, storage, tracking_uri)
    path = write_dashboard(handle, output)
    out.print(f"dashboard: {path}")
    if mlflow:
        try:
            log_dashboard(handle, path)
            out.print(f"attached to MLflow run {handle.parent_run_id} (artifacts/dashboards)")
        except Exception as e:  # noqa: BLE001 - the page is written; MLflow is a bonus
            err.print(f"[yellow]warning:[/] not attached to MLflow: {e}", highlight=False)
    if open_ and not open_page(path):
        out.print(
            f"no browser could be opened here; the page is {path.resolve()}",
            highlight=False,
            soft_wrap=True,
        )


def open_page(path: Path) -> bool:
    """Open the page in a browser; False when none opens (a server, a container, no display)."""
    import webbrowser

    try:
        return bool(webbrowser.open(path.resolve().as_uri()))
    except webbrowser.Error:
        return False
