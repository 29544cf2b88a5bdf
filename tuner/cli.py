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

app = typer.Typer(
    help="Hyperparameter search for language models: Optuna studies, real training, "
    "MLflow tracking.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
study_app = typer.Typer(help="Create, run and inspect studies.", no_args_is_help=True)
space_app = typer.Typer(help="Inspect search-space files.", no_args_is_help=True)
app.add_typer(study_app, name="study")
app.add_typer(space_app, name="space")

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
            help="Worker processes to run on this machine (default storage then: a journal file).",
        ),
    ] = 1,
) -> None:
    """Create a study from a search space and run it."""
    from tuner.space import load_space
    from tuner.study import create_study

    spec = load_space(space)
    base = apply_overrides(spec.base, parse_overrides(set_))
    spec = spec.with_settings(
        base=base, sampler=sampler, pruner=pruner, n_trials=n_trials, timeout=timeout, seed=seed
    )
    handle = create_study(name, spec, storage, tracking_uri, local_workers=workers)
    out.print(
        f"created study [bold]{name}[/] ({spec.sampler} sampler, {spec.pruner} pruner, "
        f"{spec.n_trials} trials) in {handle.storage_url}"
    )
    if run and workers > 1:
        _run_workers(handle, workers, spec.timeout)
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
    try:  # the dashboard is redrawn whenever a run ends; it never fails the run
        from tuner.dashboards import publish

        page = publish(handle)
        if page:
            out.print(f"dashboard: {page}")
    except Exception as e:  # noqa: BLE001
        err.print(f"[yellow]warning:[/] dashboard not updated: {e}", highlight=False)


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
        table.add_row(
            r["name"],
            str(r["space"]),
            str(r["sampler"]),
            f"{r['trials']}/{r['target']}",
            str(r["complete"]),
            _num(r["best"]),
            str(r["created"] or "")[:19],
        )
    out.print(table)


@study_app.command("show")
@user_errors
def study_show(
    name: Annotated[str, typer.Argument(help="Study to show.")], storage: StorageOpt = None
) -> None:
    """A table of a study's trials, best marked with *."""
    from tuner.study import load_study, trial_rows

    handle = load_study(name, storage)
    names = [p.name for p in handle.space.params]
    table = Table(
        "",
        "trial",
        "state",
        *names,
        "val loss",
        "ppl",
        "bpb",
        "params",
        "FLOPs",
        "secs",
        title=f"study {name} ({handle.space.sampler} sampler, {handle.space.pruner} pruner)",
    )
    for r in trial_rows(handle):
        state = r["state"] + (
            f" ({r['reason'][:30]})" if r["reason"] and r["state"] != "COMPLETE" else ""
        )
        table.add_row(
            "*" if r["best"] else "",
            str(r["number"]),
            state,
            *(_num(r["params"].get(n)) for n in names),
            _num(r["val_loss"]),
            _num(r["val_perplexity"]),
            _num(r["val_bpb"]),
            _si(r["n_params"]),
            _si(r["train_flops"]),
            _num(r["duration"]),
        )
    out.print(table)


@study_app.command("delete")
@user_errors
def study_delete(
    name: Annotated[str, typer.Argument(help="Study to delete.")], storage: StorageOpt = None
) -> None:
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
    out.print(
        f"{path}: ok ({len(spec.params)} params, {spec.sampler} sampler, {spec.n_trials} trials)"
    )


@space_app.command("show")
@user_errors
def space_show(path: Annotated[str, typer.Argument(help="Search-space YAML file.")]) -> None:
    """The parsed distributions and the grid size."""
    from tuner.space import load_space

    spec = load_space(path)
    out.print(f"[bold]{spec.name}[/]: {spec.description}")
    out.print(
        f"sampler {spec.sampler}, pruner {spec.pruner}, {spec.n_trials} trials, seed {spec.seed}, "
        f"objective " + ", ".join(f"{o.direction} {o.metric}" for o in spec.objectives)
    )
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
    host: Annotated[
        str, typer.Option(help="Address to bind; 127.0.0.1 keeps it local.")
    ] = "127.0.0.1",
    workers: Annotated[int, typer.Option(help="Server worker processes.")] = 1,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Start the MLflow UI on the project's store."""
    uri = tracking_uri or stores.default_tracking_uri()
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
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


@app.command("dashboard")
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
    import webbrowser

    from tuner.dashboards import log_dashboard, write_dashboard
    from tuner.study import load_study

    handle = load_study(name, storage, tracking_uri)
    path = write_dashboard(handle, output)
    out.print(f"dashboard: {path}")
    if mlflow:
        try:
            log_dashboard(handle, path)
            out.print(f"attached to MLflow run {handle.parent_run_id} (artifacts/dashboards)")
        except Exception as e:  # noqa: BLE001 - the page is written; MLflow is a bonus
            err.print(f"[yellow]warning:[/] not attached to MLflow: {e}", highlight=False)
    if open_:
        webbrowser.open(path.resolve().as_uri())


# ------------------------------------------------------------ export, train, generate (export.py)


@app.command("export")
@user_errors
def export(
    name: Annotated[str, typer.Argument(help="Study to export from.")],
    output: Annotated[str, typer.Option("-o", "--output", help="File to write.")] = "best.yaml",
    trial: Annotated[
        int | None, typer.Option("--trial", help="Export this trial number instead of the best.")
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option(
            "--metric", help="Rank trials by this metric (default: the study's first objective)."
        ),
    ] = None,
    max_params: Annotated[
        str | None,
        typer.Option(
            "--max-params", help="Only trials with at most this many parameters (5e6, 5M)."
        ),
    ] = None,
    max_flops: Annotated[
        str | None,
        typer.Option("--max-flops", help="Only trials that used at most this many training FLOPs."),
    ] = None,
    storage: StorageOpt = None,
) -> None:
    """Write the best trial's complete config (with its provenance) as a YAML file."""
    from tuner.export import Constraints, export_best

    path, pick = export_best(
        name, output, trial, metric, Constraints.parse(max_params, max_flops), storage
    )
    n_params = pick.trial.user_attrs.get("cost", {}).get("n_params")
    out.print(
        f"wrote {path}: trial {pick.trial.number} of study {name} "
        f"({pick.metric} {pick.value:.4f}, {_si(n_params)} params)",
        soft_wrap=True,
    )
    out.print(f"train it: `tuner train {path}`", highlight=False)


@app.command("train")
@user_errors
def train(
    config: Annotated[str, typer.Argument(help="RunConfig YAML (as `tuner export` writes it).")],
    tokens: Annotated[
        str | None,
        typer.Option("--tokens", help="Training budget in tokens (200000, 2e5, 200k, 1.5M)."),
    ] = None,
    flops: Annotated[
        str | None, typer.Option("--flops", help="Training budget in FLOPs (instead of --tokens).")
    ] = None,
    out_dir: Annotated[
        str | None,
        typer.Option("--out", help="Folder for the model (default: runs/NAME-TIMESTAMP)."),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config field: key=value (dotted path)."),
    ] = None,
    init_from: Annotated[
        str | None, typer.Option("--init-from", help="Fine-tune the model saved in this folder.")
    ] = None,
    tracking_uri: TrackingOpt = None,
    experiment: Annotated[
        str | None, typer.Option("--experiment", help="MLflow experiment (default: STUDY-final).")
    ] = None,
    registered_name: Annotated[
        str | None, typer.Option("--name", help="Registered model name (default: STUDY-ARCH).")
    ] = None,
) -> None:
    """Train the final model from a config: test it, save it for transformers, register it."""
    from tuner.final import train_final

    bar = _TokenBar()
    try:
        result = train_final(
            config,
            tokens,
            flops,
            out_dir,
            set_,
            init_from,
            tracking_uri,
            experiment,
            registered_name,
            on_progress=bar,
        )
    finally:
        bar.close()
    val, test = result.val, result.test
    if result.init_val:
        out.print(f"before fine-tuning: val loss {result.init_val['init_val_loss']:.4f}")
    out.print(
        f"val loss {val['val_loss']:.4f} (ppl {val['val_perplexity']:.2f}), test loss "
        f"{test['test_loss']:.4f} (ppl {test['test_perplexity']:.2f}, bpb "
        f"{test['test_bpb']:.3f}) after {_si(result.cost['tokens_seen'])} tokens",
        soft_wrap=True,
    )
    out.print(
        f"saved {result.out_dir}; MLflow run {result.run_id} in experiment "
        f"{result.experiment}; registered {result.registered_name} v{result.version}",
        highlight=False,
        soft_wrap=True,
    )
    out.print(
        f"sample: `tuner generate {result.out_dir} --prompt 'ROMEO:'`",
        highlight=False,
        soft_wrap=True,
    )


class _TokenBar:
    """A tokens progress bar that appears only once training starts, so a config error
    before it stays one line."""

    def __init__(self) -> None:
        self.bars: Any = None
        self.task: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self.bars is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            self.bars = Progress(
                "tokens", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err
            )
            self.task = self.bars.add_task("tokens", total=total)
            self.bars.start()
        self.bars.update(self.task, completed=done, total=total)

    def close(self) -> None:
        if self.bars is not None:
            self.bars.stop()


@app.command("generate")
@user_errors
def generate(
    model_dir: Annotated[str, typer.Argument(help="Model folder saved by `tuner train`.")],
    prompt: Annotated[str, typer.Option("--prompt", help="Text to continue.")] = "",
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="Tokens to add.")] = 200,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (0 = greedy).")] = 0.8,
    top_k: Annotated[
        int, typer.Option("--top-k", help="Sample from the k likeliest tokens (0 = all).")
    ] = 50,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
) -> None:
    """Sample text from a saved model."""
    from tuner.saved import generate_text

    text = generate_text(model_dir, prompt, max_new_tokens, temperature, top_k, seed)
    typer.echo(text)


# ---------------------------------------------------------------- workers (study.py)


@study_app.command("worker")
@user_errors
def study_worker(
    name: Annotated[str, typer.Argument(help="Study to work on.")],
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
    timeout: Annotated[
        float | None, typer.Option(help="Stop starting trials after this many seconds.")
    ] = None,
) -> None:
    """Join a study from any machine; run its queued trials until none is left.

    A worker that dies mid-trial is noticed by the others after the grace period
    (TUNER_GRACE_PERIOD seconds, default 120): its trial is failed and retried once.
    """
    import os

    from tuner.study import load_study, run_study
    from tuner.workers import LineReporter

    # a worker prints its own line per trial; MLflow's run links would only add noise
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # workers that load the study at the same moment must not draw the same params
    handle = load_study(
        name, storage, tracking_uri, seed_offset=int.from_bytes(os.urandom(3), "big")
    )
    reporter = LineReporter()
    reporter.note(f"joined study {name} ({handle.storage_url}, MLflow {handle.tracking_uri})")
    run_study(handle, timeout=timeout, reporter=reporter, fill=False)
    reporter.note(f"done: {handle.finished_count()}/{handle.space.n_trials} trials finished")


def _run_workers(handle: Any, workers: int, timeout: float | None) -> None:
    """Run `workers` local worker processes on a new study and wait for them."""
    from tuner.progress import best_line
    from tuner.workers import start_workers, wait_workers

    if handle.storage_url.startswith("sqlite"):
        err.print(
            "note: several workers on one SQLite file queue on its lock; a journal file "
            "(--storage PATH.log, the default with --workers) is Optuna's advice"
        )
    out.print(
        f"starting {workers} workers; more can join from any machine with "
        f"`tuner study worker {handle.name} --storage {handle.storage_url}`"
    )
    codes = wait_workers(
        start_workers(handle.name, handle.storage_url, handle.tracking_uri, workers, timeout)
    )
    line = best_line(handle.study, handle.space.objectives[0].metric)
    out.print(f"study [bold]{handle.name}[/]: {handle.finished_count()} trials finished; {line}")
    failed = [code for code in codes if code != 0]
    if failed:
        err.print(f"{len(failed)} of {workers} workers exited abnormally (codes {failed})")
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
