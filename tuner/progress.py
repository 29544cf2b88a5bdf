"""Rich terminal output for a running study: a bar over trials (with the best so far), a bar
over tokens within the current trial, and one line per finished trial."""

from __future__ import annotations

import math
from typing import Any

import optuna
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

STATE_STYLE = {"COMPLETE": "green", "PRUNED": "yellow", "FAIL": "red"}


class RichReporter:
    def __init__(self, total_trials: int, done: int, metric: str, console: Console | None = None):
        self.metric = metric
        self.console = console or Console(stderr=True)
        self.bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self.trials = self.bars.add_task("trials", total=total_trials, completed=done)
        self.tokens = self.bars.add_task("tokens", total=1, visible=False)

    def __enter__(self) -> RichReporter:
        self.bars.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bars.stop()

    def trial_started(self, number: int, params: dict[str, Any], total_tokens: int) -> None:
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in params.items())
        self.bars.update(
            self.tokens,
            description=f"trial {number} tokens",
            completed=0,
            total=total_tokens,
            visible=True,
        )
        self.console.print(f"[bold]trial {number}[/] {shown}")

    def progress(self, tokens: int, total: int) -> None:
        self.bars.update(self.tokens, completed=tokens, total=total)

    def trial_finished(self, trial: optuna.trial.FrozenTrial, study: optuna.Study) -> None:
        state = trial.state.name
        metrics = trial.user_attrs.get("metrics", {})
        parts = [f"[{STATE_STYLE.get(state, 'white')}]{state}[/]"]
        for key in ("val_loss", "val_perplexity", "val_bpb"):
            if key in metrics:
                parts.append(f"{key} {metrics[key]:.4f}")
        if trial.user_attrs.get("reason"):
            parts.append(f"({trial.user_attrs['reason'][:120]})")
        self.console.print(f"  trial {trial.number}: " + "  ".join(parts))
        self.bars.advance(self.trials)
        best = best_line(study, self.metric)
        if best:
            self.bars.update(self.trials, description=f"trials · {best}")


def best_line(study: optuna.Study, metric: str) -> str:
    try:
        if len(study.directions) > 1:
            return f"{len(study.best_trials)} trials on the Pareto front"
        best = study.best_trial
    except ValueError:
        return ""
    return f"best {metric} {best.value:.4f} (trial {best.number})"


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value and not math.isclose(value, round(value)):
        return f"{value:.3g}"
    return str(value)
