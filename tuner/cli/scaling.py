"""`tuner scaling ...`: IsoFLOP studies, scaling-law fits and compute-optimal recipes."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from tuner.cli.common import StorageOpt, TrackingOpt, err, out, user_errors
from tuner.units import si

if TYPE_CHECKING:
    from tuner.scaling.actions import CsvColumns
    from tuner.scaling.study import PreparedStudy

scaling_app = typer.Typer(
    help="Scaling laws: IsoFLOP studies, fits of L(N, D), compute-optimal recipes.",
    no_args_is_help=True,
)

NameArg = Annotated[
    str | None, typer.Argument(help="Scaling study (or give --csv / --fit instead).")
]
CsvOpt = Annotated[str | None, typer.Option("--csv", help="CSV file of runs, one per line.")]
ParamsCol = Annotated[
    str | None, typer.Option("--params-column", help="CSV column: parameter counts N.")
]
TokensCol = Annotated[
    str | None, typer.Option("--tokens-column", help="CSV column: training tokens D.")
]
FlopsCol = Annotated[
    str | None,
    typer.Option(
        "--flops-column", help="CSV column: training FLOPs C (D = C / 6N; groups IsoFLOP budgets)."
    ),
]
LossCol = Annotated[str | None, typer.Option("--loss-column", help="CSV column: final loss.")]
BootstrapOpt = Annotated[
    int, typer.Option("--bootstrap", help="Bootstrap resamples for the intervals (0 = none).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def _csv(
    path: str | None, params: str | None, tokens: str | None, flops: str | None, loss: str | None
) -> CsvColumns | None:
    from tuner.errors import ConfigError
    from tuner.scaling.actions import CsvColumns

    if path is None:
        flags = {
            "--params-column": params,
            "--tokens-column": tokens,
            "--flops-column": flops,
            "--loss-column": loss,
        }
        given = [flag for flag, value in flags.items() if value]
        if given:
            raise ConfigError(f"{given[0]}: only with --csv FILE")
        return None
    return CsvColumns(path, params, loss, tokens, flops)


@scaling_app.command("create")
@user_errors
def create(
    name: Annotated[str, typer.Argument(help="Study name (letters, digits, '_', '.', '-').")],
    space: Annotated[str, typer.Option("--space", help="Search-space YAML: its base config.")],
    budgets: Annotated[
        str, typer.Option("--budgets", help="Compute budgets in FLOPs: 1e11,3e11,1e12.")
    ],
    sizes: Annotated[int, typer.Option("--sizes", help="Model sizes per budget.")] = 5,
    spread: Annotated[
        float, typer.Option("--spread", help="Sizes span N*/spread to N*·spread around N*.")
    ] = 4.0,
    from_config: Annotated[
        str | None, typer.Option("--from", help="Base config from `tuner export` (best.yaml).")
    ] = None,
    prior: Annotated[
        str | None, typer.Option("--prior", help="Centre the sizes on this fit's N_opt(C).")
    ] = None,
    tokens_per_param: Annotated[
        float,
        typer.Option("--tokens-per-param", help="Without --prior: centre on N with D/N = this."),
    ] = 20.0,
    aspect_ratio: Annotated[
        float, typer.Option("--aspect-ratio", help="Shape rule: d_model / n_layer.")
    ] = 64.0,
    head_dim: Annotated[
        int, typer.Option("--head-dim", help="Shape rule: width per head (0 = the base's).")
    ] = 0,
    layers: Annotated[
        int, typer.Option("--layers", help="Shape rule: a fixed depth (0 = from the aspect ratio).")
    ] = 0,
    lr_sweep: Annotated[
        int, typer.Option("--lr-sweep", help="Learning rates per (budget, size), best kept.")
    ] = 1,
    lr_factor: Annotated[
        float, typer.Option("--lr-factor", help="Ratio between neighbouring swept rates.")
    ] = 3.0,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a base config field: key=value.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Study seed (trial seeds).")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the planned trials; write nothing.")
    ] = False,
    run: Annotated[bool, typer.Option("--run/--no-run", help="Run the trials now.")] = True,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Local workers.")] = 1,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Plan an IsoFLOP study (sizes around the optimum of every budget) and run it."""
    from tuner.cli.study import _run, _run_workers
    from tuner.scaling.study import create_scaling_study, parse_budgets, prepare_scaling_study

    prepared = prepare_scaling_study(
        space,
        parse_budgets(budgets),
        sizes=sizes,
        spread=spread,
        from_config=from_config,
        prior=prior,
        lr_sweep=lr_sweep,
        lr_factor=lr_factor,
        tokens_per_param=tokens_per_param,
        aspect_ratio=aspect_ratio,
        head_dim=head_dim,
        layers=layers,
        overrides=set_,
        seed=seed,
    )
    _print_plan(prepared)
    if dry_run:
        return
    handle = create_scaling_study(name, prepared, storage, tracking_uri, local_workers=workers)
    out.print(
        f"created scaling study [bold]{name}[/] ({prepared.space.n_trials} trials) in "
        f"{handle.storage_url}; fit it with `tuner scaling fit {name}`",
        soft_wrap=True,
    )
    if run and workers > 1:
        _run_workers(handle, workers, prepared.space.timeout)
    elif run:
        _run(handle, prepared.space.n_trials, prepared.space.timeout)


def _print_plan(prepared: PreparedStudy) -> None:
    table = Table(
        "trial", "budget", "target N", "N", "layers x width", "tokens", "steps", "D/N", "lr",
        title=f"IsoFLOP plan ({prepared.space.n_trials} trials)",
    )  # fmt: skip
    for i, r in enumerate(prepared.rows()):
        table.add_row(
            str(i),
            f"{r['budget']:.3g}",
            si(r["target_params"]),
            si(r["params"]),
            f"{r['n_layer']} x {r['d_model']}",
            si(r["tokens"]),
            str(r["steps"]),
            f"{r['tokens'] / r['params']:.3g}",
            f"{r['lr']:.3g}",
        )
    out.print(table)
    for line in prepared.warnings:
        err.print(f"[yellow]note:[/] {line}", highlight=False, soft_wrap=True)


@scaling_app.command("fit")
@user_errors
def fit(
    name: NameArg = None,
    csv: CsvOpt = None,
    params_column: ParamsCol = None,
    tokens_column: TokensCol = None,
    flops_column: FlopsCol = None,
    loss_column: LossCol = None,
    bootstrap: BootstrapOpt = 200,
    level: Annotated[float, typer.Option("--level", help="Interval coverage.")] = 0.95,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    as_json: JsonOpt = False,
    output: Annotated[
        str | None, typer.Option("-o", "--output", help="Write the fit as JSON here.")
    ] = None,
    mlflow: Annotated[
        bool, typer.Option("--mlflow/--no-mlflow", help="Log a study's fit to its MLflow run.")
    ] = True,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Fit the scaling law to a study's finished runs or to a CSV.

    Approach 3: L(N, D) = E + A/N^alpha + B/D^beta (Huber on log L, L-BFGS from a grid,
    bootstrap intervals); approach 2: a parabola in log N per IsoFLOP budget, then
    N_opt ∝ C^a and D_opt ∝ C^b."""
    from tuner.scaling.actions import fit_runs

    outcome = fit_runs(
        name,
        _csv(csv, params_column, tokens_column, flops_column, loss_column),
        n_bootstrap=bootstrap,
        level=level,
        seed=seed,
        output=output,
        storage_url=storage,
        tracking_uri=tracking_uri,
        mlflow=mlflow,
    )
    if as_json:
        typer.echo(json.dumps(outcome.document))
    else:
        out.print(outcome.fit.summary(), highlight=False, soft_wrap=True)
    notes = [f"wrote {p}" for p in outcome.written]
    if outcome.logged_run:
        notes.append(f"logged to MLflow run {outcome.logged_run} (scaling/fit.json)")
    if outcome.dashboard:
        notes.append(f"dashboard: {outcome.dashboard}")
    for note in notes:
        err.print(note, highlight=False, soft_wrap=True)


@scaling_app.command("recommend")
@user_errors
def recommend(
    name: NameArg = None,
    flops: Annotated[
        str | None, typer.Option("--flops", help="Compute budget in FLOPs (1e15, 3P).")
    ] = None,
    params: Annotated[
        str | None, typer.Option("--params", help="Fix the parameter count N (solve for D).")
    ] = None,
    tokens: Annotated[
        str | None, typer.Option("--tokens", help="Fix the training tokens D (solve for N).")
    ] = None,
    fit_file: Annotated[
        str | None, typer.Option("--fit", help="A fit JSON from `tuner scaling fit -o`.")
    ] = None,
    csv: CsvOpt = None,
    params_column: ParamsCol = None,
    tokens_column: TokensCol = None,
    flops_column: FlopsCol = None,
    loss_column: LossCol = None,
    bootstrap: BootstrapOpt = 200,
    as_json: JsonOpt = False,
    output: Annotated[
        str | None,
        typer.Option("-o", "--output", help="Write the recipe: a RunConfig `tuner train` takes."),
    ] = None,
    storage: StorageOpt = None,
) -> None:
    """The compute-optimal N and D for a budget, the loss to expect, and a recipe."""
    from tuner.scaling.actions import recommend_runs
    from tuner.units import parse_amount

    outcome = recommend_runs(
        name,
        _csv(csv, params_column, tokens_column, flops_column, loss_column),
        fit_file,
        flops=parse_amount(flops, "--flops"),
        params=parse_amount(params, "--params"),
        tokens=parse_amount(tokens, "--tokens"),
        n_bootstrap=bootstrap,
        output=output,
        storage_url=storage,
    )
    rec = outcome.recommendation
    if as_json:
        typer.echo(json.dumps(outcome.to_json()))
    else:
        out.print(
            "\n".join(line for line in rec.summary().splitlines() if not line.startswith("warning"))
        )
    if rec.warnings:
        err.print(f"[yellow]warning:[/] {'; '.join(rec.warnings)}", highlight=False, soft_wrap=True)
    if outcome.recipe is not None:
        p, shape = outcome.recipe.prediction, outcome.recipe.point.model
        err.print(
            f"wrote {outcome.written}: {si(p['params'])} non-embedding params "
            f"(n_layer {shape.n_layer}, d_model {shape.d_model}), {si(p['tokens'])} tokens, "
            f"predicted val loss {p['val_loss']:.4f}; train it: `tuner train {outcome.written}`",
            highlight=False,
            soft_wrap=True,
        )


@scaling_app.command("dashboard")
@user_errors
def dashboard(
    name: Annotated[str, typer.Argument(help="Scaling study to draw.")],
    output: Annotated[
        str | None,
        typer.Option("-o", "--output", help="HTML file (default: dashboards/NAME-scaling.html)."),
    ] = None,
    open_: Annotated[bool, typer.Option("--open", help="Open the page in a browser.")] = False,
    mlflow: Annotated[
        bool, typer.Option("--mlflow/--no-mlflow", help="Attach the page to the MLflow run.")
    ] = True,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Draw the IsoFLOP curves, N_opt(C) and D_opt(C), the loss frontier and the residuals."""
    import webbrowser

    from tuner.scaling.page import log_scaling_dashboard, write_scaling_dashboard
    from tuner.scaling.study import plan_of
    from tuner.study import load_study

    handle = load_study(name, storage, tracking_uri)
    plan_of(handle)
    path = write_scaling_dashboard(handle, output)
    out.print(f"dashboard: {path}")
    if mlflow:
        log_scaling_dashboard(handle, path)
        out.print(f"attached to MLflow run {handle.parent_run_id} (artifacts/dashboards)")
    if open_:
        webbrowser.open(path.resolve().as_uri())
