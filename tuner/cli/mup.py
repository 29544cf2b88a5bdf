"""`tuner mup check`: the coordinate check of a config, SP beside μP, as a table and a figure."""

from __future__ import annotations

from typing import Annotated

import typer

from tuner.cli.common import Startup, out, user_errors

mup_app = typer.Typer(
    help="μP (maximal update parametrization): tune narrow, train wide.", no_args_is_help=True
)


@mup_app.command("check")
@user_errors
def check(
    config: Annotated[str, typer.Argument(help="RunConfig YAML (gpt2 or llama).")],
    widths: Annotated[
        str, typer.Option("--widths", help="d_model values, comma-separated.")
    ] = "64,128,256,512",
    steps: Annotated[int, typer.Option("--steps", help="Adam steps before the last RMS.")] = 3,
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds averaged per width.")] = 2,
    lr: Annotated[
        float | None, typer.Option("--lr", help="Learning rate (default: the config's optim.lr).")
    ] = None,
    output: Annotated[
        str | None, typer.Option("-o", "--output", help="Write the plotly figure to this HTML.")
    ] = None,
) -> None:
    """RMS of every layer's output after a few Adam steps at each width, SP beside μP: flat
    under μP, growing under SP (the check that μP is implemented right)."""
    with Startup("coordinate check: loading torch and the data") as status:
        from tuner.config import load_run_config
        from tuner.coord_check import check_arguments, coord_check, table

        run_config = load_run_config(config)
        width_list, html = check_arguments(widths, steps, seeds, output)
        status(f"coordinate check: {len(width_list)} widths x 2 parametrizations x {seeds} seeds")
        result = coord_check(run_config, width_list, steps, tuple(range(seeds)), lr)
    out.print(table(result), soft_wrap=True, highlight=False)
    growth = result.growth("logits")
    lo, hi = min(result.widths), max(result.widths)
    out.print(
        f"logits RMS, width {hi} over {lo}: SP {growth['sp']:.2f}x, μP {growth['mup']:.2f}x",
        highlight=False,
    )
    if html is not None:
        from tuner.coord_check import write_figure

        out.print(f"wrote {write_figure(result, html)}", highlight=False)
