"""`tuner` command line: each command parses, calls one function and prints.

User errors (bad YAML, unknown study, bad URL, ...) print one line and exit with code 2.
"""

from __future__ import annotations

import functools
import math
import subprocess
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tuner import stores
from tuner.config import ConfigError, apply_overrides, parse_overrides

app = typer.Typer(help="Hyperparameter search for language models: Optuna studies, real training, "
                       "MLflow tracking.", no_args_is_help=True, pretty_exceptions_enable=False)
study_app = typer.Typer(help="Create, run and inspect studies.", no_args_is_help=True)
space_app = typer.Typer(help="Inspect search-space files.", no_args_is_help=True)
app.add_typer(study_app, name="study")
app.add_typer(space_app, name="space")

out = Console()
err = Console(stderr=True)

StorageOpt = Annotated[str | None, typer.Option("--storage", help="Optuna storage URL "
                       "(default: sqlite:///mlruns/optuna.db; a path ending in .log is a journal file).")]
TrackingOpt = Annotated[str | None, typer.Option("--tracking-uri", help="MLflow tracking URI "
                        "(default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db).")]


def user_errors(fn):
    """Turn ConfigError into one line on stderr and exit code 2; Ctrl-C into exit 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as e:
            err.print(f"[red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            name = kwargs.get("name")
            hint = f"; continue with `tuner study resume {name}`" if name else ""
            err.print(f"interrupted{hint}")
            raise typer.Exit(130) from None

    return wrapper


# ---------------------------------------------------------------- study


@study_app.command("create")
@user_errors
def study_create(
    name: Annotated[str, typer.Argument(help="Study name (letters, digits, '_', '.', '-').")],
    space: Annotated[str, typer.Option("--space", help="Search-space YAML file.")] = "search_spaces/quick.yaml",
    sampler: Annotated[str | None, typer.Option(help="grid | random | tpe | cmaes | nsga2 | qmc | gp")] = None,
    pruner: Annotated[str | None, typer.Option(help="none | median | hyperband | successive-halving")] = None,
    n_trials: Annotated[int | None, typer.Option("--n-trials", help="Trials to run (grid: every point).")] = None,
    timeout: Annotated[float | None, typer.Option(help="Stop starting trials after this many seconds.")] = None,
    seed: Annotated[int | None, typer.Option(help="Study seed (samplers and trial seeds).")] = None,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a base config field: key=value "
                                                   "(dotted path, e.g. train.tokens=100000).")] = None,
    run: Annotated[bool, typer.Option("--run/--no-run", help="Run the trials now.")] = True,
) -> None:
    """Create a study from a search space and run it."""
    from tuner.space import load_space
    from tuner.study import create_study

    spec = load_space(space)
    base = apply_overrides(spec.base, parse_overrides(set_))
    spec = spec.with_settings(base=base, sampler=sampler, pruner=pruner, n_trials=n_trials,
                              timeout=timeout, seed=seed)
    handle = create_study(name, spec, storage, tracking_uri)
    out.print(f"created study [bold]{name}[/] ({spec.sampler} sampler, {spec.pruner} pruner, "
              f"{spec.n_trials} trials) in {handle.storage_url}")
    if run:
        _run(handle, spec.n_trials, spec.timeout)


@study_app.command("resume")
@user_errors
def study_resume(
    name: Annotated[str, typer.Argument(help="Study to continue.")],
    n_trials: Annotated[int | None, typer.Option("--n-trials", help="New target trial count.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Stop starting trials after this many seconds.")] = None,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Continue a study up to its trial count."""
    from tuner.study import load_study

    handle = load_study(name, storage, tracking_uri)
    _run(handle, n_trials or handle.space.n_trials, timeout)


def _run(handle: Any, n_trials: int, timeout: float | None) -> None:
    from tuner.progress import RichReporter, best_line
    from tuner.study import run_study

    metric = handle.space.objectives[0].metric
    with RichReporter(n_trials, handle.finished_count(), metric, err) as reporter:
        run_study(handle, n_trials, timeout, reporter)
    line = best_line(handle.study, metric)
    out.print(f"study [bold]{handle.name}[/]: {handle.finished_count()} trials finished; {line}")
    out.print("browse: `tuner ui`   table: `tuner study show " + handle.name + "`")


@study_app.command("list")
@user_errors
def study_list(storage: StorageOpt = None) -> None:
    """List the studies in a storage."""
    from tuner.study import list_studies

    rows = list_studies(storage)
    if not rows:
        out.print("no studies")
        return
    table = Table("name", "space", "sampler", "trials", "complete", "best", "created")
    for r in rows:
        table.add_row(r["name"], str(r["space"]), str(r["sampler"]), f"{r['trials']}/{r['target']}",
                      str(r["complete"]), _num(r["best"]), str(r["created"] or "")[:19])
    out.print(table)


@study_app.command("show")
@user_errors
def study_show(name: Annotated[str, typer.Argument(help="Study to show.")], storage: StorageOpt = None) -> None:
    """A table of a study's trials, best marked with *."""
    from tuner.study import load_study, trial_rows

    handle = load_study(name, storage)
    names = [p.name for p in handle.space.params]
    table = Table("", "trial", "state", *names, "val loss", "ppl", "bpb", "params", "FLOPs", "secs",
                  title=f"study {name} ({handle.space.sampler} sampler, {handle.space.pruner} pruner)")
    for r in trial_rows(handle):
        state = r["state"] + (f" ({r['reason'][:30]})" if r["reason"] and r["state"] != "COMPLETE" else "")
        table.add_row("*" if r["best"] else "", str(r["number"]), state,
                      *(_num(r["params"].get(n)) for n in names), _num(r["val_loss"]),
                      _num(r["val_perplexity"]), _num(r["val_bpb"]), _si(r["n_params"]),
                      _si(r["train_flops"]), _num(r["duration"]))
    out.print(table)


@study_app.command("delete")
@user_errors
def study_delete(name: Annotated[str, typer.Argument(help="Study to delete.")], storage: StorageOpt = None) -> None:
    """Delete a study and its MLflow experiment."""
    from tuner.study import delete_study

    delete_study(name, storage)
    out.print(f"deleted study {name}")


# ---------------------------------------------------------------- space


@space_app.command("validate")
@user_errors
def space_validate(path: Annotated[str, typer.Argument(help="Search-space YAML file.")]) -> None:
    """Check a search-space file; exit 2 with the first problem."""
    from tuner.space import load_space

    spec = load_space(path)
    out.print(f"{path}: ok ({len(spec.params)} params, {spec.sampler} sampler, {spec.n_trials} trials)")


@space_app.command("show")
@user_errors
def space_show(path: Annotated[str, typer.Argument(help="Search-space YAML file.")]) -> None:
    """The parsed distributions and the grid size."""
    from tuner.space import load_space

    spec = load_space(path)
    out.print(f"[bold]{spec.name}[/]: {spec.description}")
    out.print(f"sampler {spec.sampler}, pruner {spec.pruner}, {spec.n_trials} trials, seed {spec.seed}, "
              f"objective " + ", ".join(f"{o.direction} {o.metric}" for o in spec.objectives))
    table = Table("param", "config path", "distribution", "grid values")
    for p in spec.params:
        try:
            grid = ", ".join(_num(v) for v in p.grid_values())
        except ConfigError:
            grid = "(needs `grid`)"
        table.add_row(p.name, p.path, p.describe(), grid)
    out.print(table)
    try:
        out.print(f"grid size: {spec.grid_size()}")
    except ConfigError:
        out.print("grid size: n/a (a float param has no `grid` values)")


# ---------------------------------------------------------------- ui


@app.command("ui")
@user_errors
def ui(
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 5000,
    host: Annotated[str, typer.Option(help="Address to bind; 127.0.0.1 keeps it local.")] = "127.0.0.1",
    tracking_uri: TrackingOpt = None,
) -> None:
    """Start the MLflow UI on the project's store."""
    uri = tracking_uri or stores.default_tracking_uri()
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host,
           "--port", str(port)]
    if uri.startswith("sqlite:///"):
        cmd += ["--default-artifact-root", stores.artifact_root()]
    out.print(f"MLflow UI on http://{host}:{port} (store {uri}); Ctrl-C to stop")
    raise typer.Exit(subprocess.call(cmd))


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.4g}"
    return str(value)


def _si(value: Any) -> str:
    if value is None:
        return "-"
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.3g}"




# ---------------------------------------------------------------- dashboard (dashboards.py)


# ---------------------------------------------------------------- export, train, generate (export.py)


# ---------------------------------------------------------------- workers (study.py)
