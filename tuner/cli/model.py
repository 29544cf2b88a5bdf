"""`tuner export`, `tuner train` and `tuner generate`: from the best trial to a final model."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tuner.cli.common import StorageOpt, TrackingOpt, err, out, user_errors
from tuner.metrics import get
from tuner.units import si


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
    width: Annotated[
        int | None,
        typer.Option("--width", help="Write the recipe at this d_model (μP keeps the tuned lr)."),
    ] = None,
    params: Annotated[
        str | None,
        typer.Option("--params", help="Or at the width nearest this non-embedding count (100M)."),
    ] = None,
    storage: StorageOpt = None,
) -> None:
    """Write the best trial's complete config (with its provenance) as a YAML file."""
    from tuner.export import Constraints, export_best
    from tuner.units import parse_amount

    path, pick = export_best(
        name,
        output,
        trial,
        metric,
        Constraints.parse(max_params, max_flops),
        storage,
        width,
        parse_amount(params, "--params"),
    )
    if pick.warning:
        err.print(f"warning: {pick.warning}", soft_wrap=True, highlight=False)
    n_params = pick.trial.cost.get("n_params")
    mc = pick.config.model
    moved = (
        ""
        if width is None and params is None
        else f", at d_model {mc.d_model} ({mc.parametrization})"
    )
    out.print(
        f"wrote {path}: trial {pick.trial.number} of study {name} "
        f"({pick.metric} {pick.value:.4f}, {si(n_params)} params){moved}",
        soft_wrap=True,
    )
    out.print(f"train it: `tuner train {path}`", highlight=False)


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
    """Train the final model from a config: test it, save it for transformers, register it.

    Before its bar it says what it trains (model, parameters, tokens, learning rate, device);
    at every milestone, the validation and training loss.
    """
    from tuner.bars import TrainReporter

    shown = TrainReporter(err)
    try:
        shown.stage("starting: loading torch, transformers and MLflow")
        from tuner.final import train_final

        shown.stage("preparing: data (built once, then cached) and model")
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
            on_progress=shown.progress,
            on_note=shown.note,
            on_milestone=shown.milestone,
        )
    finally:
        shown.close()
    val, test = result.val, result.test
    if result.init_val:
        out.print(f"before fine-tuning: val loss {result.init_val['init_val_loss']:.4f}")
    out.print(
        f"val loss {val['val_loss']:.4f} (ppl {val['val_perplexity']:.2f}), test loss "
        f"{test['test_loss']:.4f} (ppl {test['test_perplexity']:.2f}, bpb "
        f"{test['test_bpb']:.3f}) after {si(result.cost['tokens_seen'])} tokens",
        soft_wrap=True,
    )
    scores = [(k, v) for k, v in test.items() if k.startswith("task.") and get(k).objective]
    if scores:
        shown = ", ".join(f"{k.removeprefix('task.')} {v:.4g}" for k, v in scores)
        out.print(f"test split tasks: {shown}", soft_wrap=True)
    if result.prediction:
        out.print(_prediction_line(result.prediction), highlight=False, soft_wrap=True)
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


def _prediction_line(p: dict[str, Any]) -> str:
    """A scaling recipe's promise against what this run achieved."""
    if not p["comparable"]:
        return (
            f"scaling prediction (val loss {p['predicted']:.4f}) is for {si(p['params'])} "
            f"params and {si(p['tokens'])} tokens; this run differs, so it is not compared"
        )
    band = f" [{p['interval'][0]:.4f}, {p['interval'][1]:.4f}]" if p.get("interval") else ""
    return (
        f"scaling prediction: val loss {p['predicted']:.4f}{band} predicted, "
        f"{p['achieved']:.4f} achieved ({100 * p['error']:+.2f} %)"
    )


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
