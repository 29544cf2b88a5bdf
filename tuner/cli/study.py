"""`tuner study ...` and `tuner space ...`: create, run, resume, inspect and delete studies."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from tuner.cli.common import (
    FormatOpt,
    GpusOpt,
    Startup,
    StorageOpt,
    TrackingOpt,
    err,
    out,
    print_table,
    user_errors,
)
from tuner.errors import ConfigError
from tuner.units import num, plural

if TYPE_CHECKING:
    from tuner.study import StudyHandle

STARTING = "starting: loading torch, Optuna and MLflow"
study_app = typer.Typer(help="Create, run and inspect studies.", no_args_is_help=True)
space_app = typer.Typer(help="Inspect search-space files.", no_args_is_help=True)


@study_app.command("create")
@user_errors
def study_create(
    name: Annotated[str, typer.Argument(help="Study name (letters, digits, '_', '.', '-').")],
    space: Annotated[
        str, typer.Option("--space", help="Search-space YAML file.")
    ] = "search_spaces/quick.yaml",
    sampler: Annotated[
        str | None, typer.Option(help="grid | random | tpe | cmaes | nsga2 | qmc | gp")
    ] = None,
    pruner: Annotated[
        str | None, typer.Option(help="none | median | hyperband | successive-halving")
    ] = None,
    n_trials: Annotated[
        int | None, typer.Option("--n-trials", help="Trials to run (grid: every point).")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Stop starting trials after this many seconds.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Study seed (samplers and trial seeds).")] = None,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override a base config field: key=value (dotted path, e.g. train.tokens=100000).",
        ),
    ] = None,
    run: Annotated[bool, typer.Option("--run/--no-run", help="Run the trials now.")] = True,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            help="Workers on this machine, this process one of them on a CPU (default storage "
            "then: a journal file).",
        ),
    ] = 1,
    gpus: GpusOpt = None,
    warm_start: Annotated[
        str | None,
        typer.Option(
            "--warm-start",
            help="Seed the study from an earlier study (same params): its trials as prior "
            "observations, or its best configurations queued first.",
        ),
    ] = None,
    warm_start_top: Annotated[
        int, typer.Option("--warm-start-top", help="Configurations --warm-start queues.")
    ] = 3,
    stop_when_stalled: Annotated[
        float | None,
        typer.Option(
            "--stop-when-stalled",
            help="Stop early once more trials are unlikely to beat the best by this margin "
            "(the space's `terminate: {margin: M}`).",
        ),
    ] = None,
) -> None:
    """Create a study from a search space and run it."""
    with Startup(STARTING) as say:
        from tuner.config import apply_overrides, parse_overrides
        from tuner.space import load_space
        from tuner.spawn import check_placement
        from tuner.stores import check_study_name
        from tuner.study import create_study
        from tuner.validate import check_store_urls, preflight

        check_study_name(name)
        check_store_urls(storage, tracking_uri)
        spec = load_space(space)
        base = apply_overrides(spec.base, parse_overrides(set_))
        terminate = None
        if stop_when_stalled is not None:
            terminate = {**(spec.terminate or {}), "margin": stop_when_stalled}
        spec = spec.with_settings(
            base=base,
            sampler=sampler,
            pruner=pruner,
            n_trials=n_trials,
            timeout=timeout,
            seed=seed,
            terminate=terminate,
        )
        devices = check_placement(spec, workers, gpus)  # before anything is written
        say("checking the space at its extremes: data, sizes, memory")
        for line in preflight(spec, run_here=run):  # every check before anything is written
            err.print(f"[yellow]warning:[/] {line}", highlight=False, soft_wrap=True)
        say("opening stores: Optuna storage and MLflow tracking")
        handle = create_study(
            name,
            spec,
            storage,
            tracking_uri,
            local_workers=workers,
            warm_start=warm_start,
            warm_top=warm_start_top,
        )
    out.print(
        f"created study [bold]{name}[/] ({spec.sampler} sampler, {spec.pruner} pruner, "
        f"{plural(spec.n_trials, 'trial')}) in {handle.storage_url}"
    )
    if run and (workers > 1 or devices):
        _run_workers(handle, workers, spec.timeout, devices)
    elif run:
        _run(handle, spec.n_trials, spec.timeout)


@study_app.command("resume")
@user_errors
def study_resume(
    name: Annotated[str, typer.Argument(help="Study to continue.")],
    n_trials: Annotated[
        int | None, typer.Option("--n-trials", help="New target trial count.")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Stop starting trials after this many seconds.")
    ] = None,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Continue a study up to its trial count."""
    with Startup(STARTING) as say:
        from tuner.study import load_study
        from tuner.validate import check_run_flags

        check_run_flags(n_trials, timeout)
        say("opening stores: Optuna storage and MLflow tracking")
        handle = load_study(name, storage, tracking_uri)
    _run(handle, n_trials or handle.space.n_trials, timeout)


def _run(handle: StudyHandle, n_trials: int, timeout: float | None) -> None:
    """Run the study in this process with progress bars, then finish it."""
    from tuner.progress import RichReporter, best_short
    from tuner.startup import warm_up
    from tuner.study import run_study

    metric = handle.space.objectives[0].metric
    done, best = handle.finished_count(), best_short(handle.study)
    with RichReporter(n_trials, done, metric, err, best) as reporter:
        if done < n_trials:  # nothing to run: no start-up either
            warm_up(handle.space, reporter.stage)
        run_study(handle, n_trials, timeout, reporter)
    _finish(handle)


def _run_workers(
    handle: StudyHandle, workers: int, timeout: float | None, gpus: list[int] | None = None
) -> None:
    """Run `workers` local workers on a new study, wait for them, then finish it."""
    from tuner.workers import run_workers

    if workers > 1 and handle.storage_url.startswith("sqlite"):
        err.print(
            "note: several workers on one SQLite file queue on its lock; a journal file "
            "(--storage PATH.log, the default with --workers) is Optuna's advice"
        )
    out.print(
        f"starting {workers} workers; more can join from any machine with "
        f"`tuner study worker {handle.name} --storage {handle.storage_url}`"
    )
    failed = run_workers(handle, workers, timeout, gpus)
    _finish(handle)
    _exit_if_failed(failed, workers)


def _exit_if_failed(failed: list[int], workers: int) -> None:
    """Exit 1 if any worker did, saying how many and their codes."""
    if failed:
        err.print(f"{len(failed)} of {workers} workers exited abnormally (codes {failed})")
        raise typer.Exit(1)


def _finish(handle: StudyHandle) -> None:
    """After every run, whichever way it ran: the summary line, then the dashboard redrawn."""
    from tuner import stores
    from tuner.mlflow_ui import experiment_url
    from tuner.page import publish
    from tuner.progress import best_line

    line = best_line(handle.study, handle.space.objectives[0].metric)
    done = plural(handle.finished_count(), "trial")
    out.print(f"study [bold]{handle.name}[/]: {done} finished; {line}")
    table = f"table: `tuner study show {handle.name}`"
    if stores.is_server(handle.tracking_uri):  # a server: its own UI
        url = experiment_url(handle.tracking_uri, handle.experiment_id)
        out.print(f"browse: {url}", highlight=False, soft_wrap=True)
        out.print(table)
    else:
        out.print(f"browse: `tuner ui`   {table}")
    try:  # the dashboard never fails the run, but a failure is said
        page = publish(handle)
        if page:
            out.print(f"dashboard: {page}")
    except Exception as e:  # noqa: BLE001
        err.print(f"[yellow]warning:[/] dashboard not updated: {e}", highlight=False)


@study_app.command("worker")
@user_errors
def study_worker(
    name: Annotated[str, typer.Argument(help="Study to work on.")],
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
    timeout: Annotated[
        float | None, typer.Option(help="Stop starting trials after this many seconds.")
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", min=1, help="Workers on this machine, this process one of them on a CPU."
        ),
    ] = 1,
    gpus: GpusOpt = None,
) -> None:
    """Join a study from any machine; run its queued trials until none is left.

    A worker that dies mid-trial is noticed by the others after the grace period
    (TUNER_GRACE_PERIOD seconds, default 120): its trial is failed and retried once.
    """
    from tuner.study import load_study
    from tuner.validate import check_run_flags
    from tuner.workers import run_workers, work

    check_run_flags(None, timeout)
    # workers that load the study at the same moment must not draw the same params
    handle = load_study(
        name, storage, tracking_uri, seed_offset=int.from_bytes(os.urandom(3), "big")
    )
    if workers > 1 or gpus is not None:  # K workers here, this process one of them on a CPU
        from tuner.spawn import check_placement

        devices = check_placement(handle.space, workers, gpus)
        _exit_if_failed(run_workers(handle, workers, timeout, devices), workers)
        return
    work(handle, timeout)


@study_app.command("list")
@user_errors
def study_list(storage: StorageOpt = None, format_: FormatOpt = "table") -> None:
    """List the studies in a storage."""
    from tuner.study import list_studies
    from tuner.tableformat import check_format
    from tuner.tables import study_table

    fmt = check_format(format_)
    rows = list_studies(storage)
    if not rows and fmt == "table":
        out.print("no studies")
        return
    print_table(study_table(rows, every=fmt in ("csv", "json")), fmt)


@study_app.command("show")
@user_errors
def study_show(
    name: Annotated[str, typer.Argument(help="Study to show.")],
    storage: StorageOpt = None,
    columns: Annotated[
        str | None,
        typer.Option(
            "--columns",
            help="Columns to show, in order: e.g. trial,state,val_loss,learning_rate "
            "(any param, metric, or best, duration, reason, mlflow_run_id).",
        ),
    ] = None,
    format_: FormatOpt = "table",
) -> None:
    """A study's trials, most important columns first, best marked with *.

    In a terminal the table fits its width; piped, it is plain aligned text. A trial pruned
    at milestone 1 reads PRUNED@1; other reasons are numbered footnotes.
    """
    from tuner.study import load_study
    from tuner.tableformat import check_format
    from tuner.tables import trial_table

    fmt = check_format(format_)
    handle = load_study(name, storage)
    print_table(trial_table(handle, columns, every=fmt in ("csv", "json")), fmt)


@study_app.command("delete")
@user_errors
def study_delete(
    name: Annotated[str, typer.Argument(help="Study to delete.")],
    storage: StorageOpt = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Delete even with trials running: they are failed, their runs ended."
        ),
    ] = False,
) -> None:
    """Delete a study and its MLflow experiment (refused while trials run, unless --force)."""
    from tuner.study import delete_study

    stopped = delete_study(name, storage, force=force)
    note = f" (stopped running trials {', '.join(map(str, stopped))})" if stopped else ""
    out.print(f"deleted study {name}{note}")


@space_app.command("validate")
@user_errors
def space_validate(path: Annotated[str, typer.Argument(help="Search-space YAML file.")]) -> None:
    """Check a search-space file; exit 2 with the first problem."""
    from tuner.space import load_space
    from tuner.validate import check_space

    spec = load_space(path)
    try:
        warnings = check_space(spec)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    for line in warnings:
        err.print(f"[yellow]warning:[/] {line}", highlight=False, soft_wrap=True)
    out.print(
        f"{path}: ok ({plural(len(spec.params), 'param')}, {spec.sampler} sampler, "
        f"{plural(spec.n_trials, 'trial')})"
    )


@space_app.command("show")
@user_errors
def space_show(path: Annotated[str, typer.Argument(help="Search-space YAML file.")]) -> None:
    """The parsed distributions and the grid size."""
    from tuner.space import load_space

    spec = load_space(path)
    out.print(f"[bold]{spec.name}[/]: {spec.description}")
    out.print(
        f"sampler {spec.sampler}, pruner {spec.pruner}, {plural(spec.n_trials, 'trial')}, "
        f"seed {spec.seed}, "
        f"objective " + ", ".join(f"{o.direction} {o.metric}" for o in spec.objectives)
    )
    table = Table("param", "config path", "distribution", "grid values")
    for p in spec.params:
        try:
            grid = ", ".join(num(v) for v in p.grid_values())
        except ConfigError:
            grid = "(needs `grid`)"
        table.add_row(p.name, p.path, p.describe(), grid)
    out.print(table)
    try:
        out.print(f"grid size: {spec.grid_size()}")
    except ConfigError:
        out.print("grid size: n/a (a float param has no `grid` values)")
