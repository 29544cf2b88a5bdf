"""`tuner` command line: each command parses, calls one function and prints.

User errors (bad YAML, unknown study, bad URL, ...) print one line and exit with code 2;
store and training failures print one line and exit with 1. Commands import their work
lazily, so `tuner --help` starts fast.
"""

from __future__ import annotations

import typer

from tuner.cli import model, results, tools
from tuner.cli.common import OneLineGroup
from tuner.cli.mup import mup_app
from tuner.cli.scaling import scaling_app
from tuner.cli.study import space_app, study_app

app = typer.Typer(
    help="Hyperparameter search for language models: Optuna studies, real training, "
    "MLflow tracking.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=OneLineGroup,
)


@app.callback()
def main() -> None:
    """Hyperparameter search for language models: Optuna studies, real training, MLflow
    tracking."""
    from tuner.quiet import quiet_logs

    quiet_logs()


app.add_typer(study_app, name="study")
app.add_typer(space_app, name="space")
app.add_typer(mup_app, name="mup")
app.add_typer(scaling_app, name="scaling")
app.command("ui")(results.ui)
app.command("dashboard")(results.dashboard)
app.command("export")(model.export)
app.command("train")(model.train)
app.command("generate")(model.generate)
app.command("optuna-dashboard")(tools.optuna_dashboard)
