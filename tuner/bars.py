"""The pieces of rich progress bars tuner shares, and what `tuner train` shows while it runs.

A bar's task says what it counts through its fields: `unit="tokens"` (amounts as 20k/40k,
tokens/s) or none (trials, 3/8); `eta` (seconds) replaces rich's estimate where tuner knows
better (a study's time left); `best` is text for the trials bar.
"""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.status import Status
from rich.text import Text

from tuner.units import si


class CountColumn(ProgressColumn):
    """`3/8` trials, `20k/40k` tokens."""

    def render(self, task: Task) -> Text:
        if task.total is None:
            return Text("")
        if task.fields.get("unit") == "tokens":
            return Text(f"{si(task.completed)}/{si(task.total)}", "progress.download")
        return Text(f"{task.completed:.0f}/{task.total:.0f}", "progress.download")


class EtaColumn(ProgressColumn):
    """Time left: the study's (set by the reporter) or the trial's (rich's speed estimate)."""

    def render(self, task: Task) -> Text:
        if task.total is None or task.finished:
            return Text("")
        left = task.fields.get("eta", task.time_remaining)
        return Text(f"ETA {clock(left)}", "progress.remaining")


class RateColumn(ProgressColumn):
    """Tokens per second of the trial; the best value so far on the trials bar."""

    def render(self, task: Task) -> Text:
        if task.fields.get("unit") == "tokens":
            speed = task.speed if task.total is not None else None
            return Text(f"{si(speed)} tok/s" if speed else "", "progress.data.speed")
        return Text(str(task.fields.get("best", "")), "green")


def clock(seconds: float | None) -> str:
    """3725 -> 1:02:05; None -> -:--:--."""
    if seconds is None or not math.isfinite(seconds):
        return "-:--:--"
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


class TrainReporter:
    """What `tuner train` shows: a spinner saying what start-up does (terminal only), the line
    on what it trains, a token bar with its timer, ETA and tokens/s, and one line per milestone.
    """

    def __init__(self, console: Console):
        self.console = console
        self.status: Status | None = None
        self.bars: Progress | None = None
        self.task: Any = None

    def stage(self, text: str) -> None:
        """What start-up does now; a spinner in a terminal, nothing when piped."""
        if not self.console.is_terminal or self.bars is not None:
            return
        if self.status is None:
            self.status = self.console.status(text)
            self.status.start()
        else:
            self.status.update(text)

    def note(self, text: str) -> None:
        self.console.print(text, highlight=False)

    def progress(self, tokens: int, total: int) -> None:
        if self.bars is None:
            self._stop_status()
            self.bars = Progress(
                TextColumn("training"),
                BarColumn(bar_width=24),
                CountColumn(),
                TimeElapsedColumn(),
                EtaColumn(),
                RateColumn(),
                console=self.console,
                speed_estimate_period=24 * 3600,
            )
            self.task = self.bars.add_task("training", total=total, unit="tokens")
            self.bars.start()
        self.bars.update(self.task, completed=tokens, total=total)

    def milestone(self, m: Any) -> None:
        """One line per evaluation (a tuner.train.Milestone), above the bar."""
        values = m.metrics
        self.console.print(
            f"milestone {m.index}: {si(m.tokens_seen)} tokens  val_loss {values['val_loss']:.4f}"
            f"  train_loss {values['train_loss']:.4f}  lr {values['learning_rate']:.3g}",
            highlight=False,
        )

    def _stop_status(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None

    def close(self) -> None:
        self._stop_status()
        if self.bars is not None:
            self.bars.stop()
