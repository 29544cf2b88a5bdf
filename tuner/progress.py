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
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from tuner.bars import CountColumn, EtaColumn, RateColumn
from tuner.records import TrialRecord, short_state
from tuner.space import short_name
from tuner.units import plural

STATE_STYLE = {"COMPLETE": "green", "PRUNED": "yellow", "FAIL": "red", "RUNNING": "cyan"}
SHOWN_METRICS = (
    ("val_loss", "val_loss", ".4f"),
    ("val_perplexity", "ppl", ".2f"),
    ("val_bpb", "bpb", ".4f"),
)


class Reporter(Protocol):
    def trial_started(self, number: int, params: dict[str, Any], total_tokens: int) -> None: ...
    def progress(self, tokens: int, total: int) -> None: ...
    def trial_finished(self, trial: optuna.trial.FrozenTrial, study: optuna.Study) -> None: ...
    def note(self, text: str) -> None: ...
    def stage(self, text: str) -> None: ...


class NullReporter:
    def trial_started(self, number: int, params: dict[str, Any], total_tokens: int) -> None:
        pass

    def progress(self, tokens: int, total: int) -> None:
        pass

    def trial_finished(self, trial: optuna.trial.FrozenTrial, study: optuna.Study) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def stage(self, text: str) -> None:
        """What start-up is doing now (loading data, model code, ...)."""


class RichReporter(NullReporter):
    """A bar over trials (elapsed, ETA of the study, best so far), a bar over the current
    trial's tokens (its own timer, ETA, tokens/s), and one line per started and finished trial.
    Before the first trial, the second bar says what start-up is doing (`stage`)."""

    def __init__(
        self,
        total_trials: int,
        done: int,
        metric: str,
        console: Console | None = None,
        best: str = "",
    ):
        self.metric = metric
        self.console = console or Console(stderr=True)
        self.bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=20),
            CountColumn(),
            TimeElapsedColumn(),
            EtaColumn(),
            RateColumn(),
            console=self.console,
            transient=False,
            speed_estimate_period=24 * 3600,  # a trial's speed over the whole trial
        )
        self.trials = self.bars.add_task("trials", total=total_trials, completed=done, best=best)
        self.tokens = self.bars.add_task("", total=None, visible=False, unit="tokens")
        self.durations: list[float] = []
        """Wall seconds of each trial finished by this process: the study's ETA."""
        self.started = 0.0

    def __enter__(self) -> RichReporter:
        self.bars.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bars.stop()

    def stage(self, text: str) -> None:
        self.bars.update(self.tokens, description=text, visible=True)

    def trial_started(self, number: int, params: dict[str, Any], total_tokens: int) -> None:
        self.started = time.monotonic()
        self.bars.reset(  # reset, not update: the trial's timer and speed start again
            self.tokens, total=total_tokens, description=f"trial {number}", visible=True
        )
        self.console.print(f"[bold]trial {number}[/] {params_text(params)}", highlight=False)

    def progress(self, tokens: int, total: int) -> None:
        self.bars.update(self.tokens, completed=tokens, total=total)
        current_left = self.bars.tasks[self.tokens].time_remaining
        done = tokens / total if total else 0.0
        self.bars.update(self.trials, eta=self.study_eta(done, current_left))

    def study_eta(self, fraction: float, current_left: float | None = None) -> float | None:
        """Seconds left in the study: what the current trial (`fraction` done) has left at its
        own pace, plus the trials after it at the mean time of those finished here (before any
        has finished: the current trial's pace)."""
        task = self.bars.tasks[self.trials]
        after = (task.total or 0) - task.completed - (1 if fraction > 0 else 0)
        elapsed = time.monotonic() - self.started if self.started else 0.0
        if self.durations:
            per_trial = sum(self.durations) / len(self.durations)
        elif fraction > 0.02:
            per_trial = elapsed / fraction
        else:
            return None
        if fraction > 0 and current_left is None:
            current_left = per_trial * (1 - fraction)
        return max(0.0, (current_left or 0.0) + max(after, 0) * per_trial)

    def trial_finished(self, trial: optuna.trial.FrozenTrial, study: optuna.Study) -> None:
        record = TrialRecord.of(trial)
        state, reason = short_state(record.state, record.reason)
        style = STATE_STYLE.get(record.state, "white")
        self.console.print(
            f"  trial {trial.number} [{style}]{state}[/]  {outcome(record, reason)}",
            highlight=False,
        )
        if self.started:
            self.durations.append(time.monotonic() - self.started)
        self.bars.update(self.tokens, visible=False)  # its line above says how it ended
        self.bars.advance(self.trials)
        self.bars.update(self.trials, best=best_short(study), eta=self.study_eta(0.0))

    def note(self, text: str) -> None:
        self.console.print(text, highlight=False)


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
        state, reason = short_state(record.state, record.reason)
        self._print(f"trial {trial.number} {state} {outcome(record, reason)}".rstrip())

    def note(self, text: str) -> None:
        self._print(text)

    def stage(self, text: str) -> None:
        self._print(text)


def outcome(record: TrialRecord, reason: str | None = None) -> str:
    """The finished trial's metrics, its time and, if it did not complete, why."""
    reason = record.reason if reason is None else reason
    values = record.metrics
    parts = [f"{label} {values[k]:{form}}" for k, label, form in SHOWN_METRICS if k in values]
    if record.duration is not None:
        parts.append(f"{record.duration:.0f} s")
    if reason:
        parts.append(f"({reason.splitlines()[0][:200]})")
    return "  ".join(parts)


def params_text(params: dict[str, Any]) -> str:
    return " ".join(f"{short_name(k)}={_fmt(v)}" for k, v in params.items())


def best_short(study: optuna.Study) -> str:
    """The best so far in a few characters, for the trials bar."""
    try:
        if len(study.directions) > 1:
            return f"front: {plural(len(study.best_trials), 'trial')}"
        best = study.best_trial
    except ValueError:
        return ""
    return f"best {best.value:.4g} (#{best.number})"


def best_line(study: optuna.Study, metric: str) -> str:
    try:
        if len(study.directions) > 1:
            return f"{plural(len(study.best_trials), 'trial')} on the Pareto front"
        best = study.best_trial
    except ValueError:
        return ""
    return f"best {metric} {best.value:.4f} (trial {best.number})"


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value and not math.isclose(value, round(value)):
        return f"{value:.3g}"
    return str(value)
