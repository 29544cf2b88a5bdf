"""What a running study shows: rich bars in a terminal (`RichReporter`), one line per event
when K workers share a terminal (`LineReporter`), or nothing (`NullReporter`)."""

from __future__ import annotations

import math
import os
import socket
import sys
import time
from typing import Any, Protocol

import optuna
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tuner.records import TrialRecord

STATE_STYLE = {"COMPLETE": "green", "PRUNED": "yellow", "FAIL": "red"}
SHOWN_METRICS = ("val_loss", "val_perplexity", "val_bpb")


class Reporter(Protocol):
    def trial_started(self, number: int, params: dict[str, Any], total_tokens: int) -> None: ...
    def progress(self, tokens: int, total: int) -> None: ...
    def trial_finished(self, trial: optuna.trial.FrozenTrial, study: optuna.Study) -> None: ...
    def note(self, text: str) -> None: ...


class NullReporter:
    def trial_started(self, number: int, params: dict[str, Any], total_tokens: int) -> None:
        pass

    def progress(self, tokens: int, total: int) -> None:
        pass

    def trial_finished(self, trial: optuna.trial.FrozenTrial, study: optuna.Study) -> None:
        pass

    def note(self, text: str) -> None:
        pass


class RichReporter(NullReporter):
    """A bar over trials (with the best so far), a bar over tokens within the current trial,
    and one line per finished trial."""

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
        self.bars.update(
            self.tokens,
            description=f"trial {number} tokens",
            completed=0,
            total=total_tokens,
            visible=True,
        )
        self.console.print(f"[bold]trial {number}[/] {params_text(params)}")

    def progress(self, tokens: int, total: int) -> None:
        self.bars.update(self.tokens, completed=tokens, total=total)

    def trial_finished(self, trial: optuna.trial.FrozenTrial, study: optuna.Study) -> None:
        record = TrialRecord.of(trial)
        style = STATE_STYLE.get(record.state, "white")
        self.console.print(f"  trial {trial.number}: [{style}]{record.state}[/]  {outcome(record)}")
        self.bars.advance(self.trials)
        best = best_line(study, self.metric)
        if best:
            self.bars.update(self.trials, description=f"trials · {best}")

    def note(self, text: str) -> None:
        self.console.print(text)


class LineReporter(NullReporter):
    """One line per trial start and end, prefixed with the worker: K workers share a terminal,
    where progress bars would garble each other."""

    def __init__(self, tag: str | None = None, stream: Any = None):
        self.tag = tag or f"{socket.gethostname()}:{os.getpid()}"
        self.stream = stream or sys.stderr

    def _print(self, text: str) -> None:
        now = time.strftime("%H:%M:%S")
        self.stream.write(f"[{self.tag} {now}] {text}\n")  # one write: K workers' lines don't mix
        self.stream.flush()

    def trial_started(self, number: int, params: dict[str, Any], total_tokens: int) -> None:
        self._print(f"trial {number} started: {params_text(params)}")

    def trial_finished(self, trial: optuna.trial.FrozenTrial, study: optuna.Study) -> None:
        record = TrialRecord.of(trial)
        self._print(f"trial {trial.number} {record.state} {outcome(record)}".rstrip())

    def note(self, text: str) -> None:
        self._print(text)


def outcome(record: TrialRecord) -> str:
    """The finished trial's metrics and, if it did not complete, why."""
    parts = [f"{k} {record.metrics[k]:.4f}" for k in SHOWN_METRICS if k in record.metrics]
    if record.reason:
        parts.append(f"({record.reason[:120]})")
    return "  ".join(parts)


def params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in params.items())


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
