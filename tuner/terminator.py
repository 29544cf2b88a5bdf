"""Study-level early stopping (opt-in): stop a study once more trials are unlikely to beat
its best by a margin the user names.

A space turns it on with `terminate: {margin: 0.01}` (objective units, e.g. nats of
val_loss). After every finished trial, once `min_trials` trials have completed, two tests:

- regret bound (Makarova et al. 2022, Optuna's RegretBoundEvaluator): a Gaussian process
  fitted to the best half of the completed trials bounds, with high probability, how far the
  best value found is from the best value in the space; the study stops when that bound is
  below `margin`;
- stagnation (only with `patience: N`): the study stops when its last N finished trials did
  not improve the best by `margin`.

Stopping leaves the study resumable: its remaining queued trials stay queued.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tuner.errors import ConfigError
from tuner.quiet import experimental_ok

KEYS = ("margin", "min_trials", "patience")


@dataclass(frozen=True)
class Terminate:
    margin: float
    min_trials: int = 8
    patience: int | None = None


def parse_terminate(raw: Any, n_objectives: int = 1) -> dict[str, Any] | None:
    """The space's `terminate` mapping, checked; None when absent (run every trial)."""
    if raw is None or raw is False:
        return None
    if not isinstance(raw, dict):
        raise ConfigError("terminate: expected a mapping like {margin: 0.01}")
    for key in raw:
        if key not in KEYS:
            raise ConfigError(f"terminate.{key}: unknown key (known: {', '.join(KEYS)})")
    if n_objectives > 1:
        raise ConfigError("terminate: needs a single objective")
    margin = raw.get("margin")
    if isinstance(margin, bool) or not isinstance(margin, int | float) or not margin > 0:
        raise ConfigError(f"terminate.margin: must be a positive number, got {margin!r}")
    out: dict[str, Any] = {"margin": float(margin)}
    for key, low in (("min_trials", 2), ("patience", 1)):
        value = raw.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"terminate.{key}: must be a whole number >= {low}, got {value!r}")
        out[key] = value
    return out


def verdict(trials: Sequence[Any], minimize: bool, settings: dict[str, Any], seed: int = 0) -> str:
    """Why the study should stop now, or '' to go on. `trials`: finished FrozenTrials in the
    order they finished."""
    import optuna
    from optuna.terminator import RegretBoundEvaluator

    rule = Terminate(**settings)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < rule.min_trials:
        return ""
    if rule.patience:
        since = _trials_since_improvement(trials, minimize, rule.margin)
        if since >= rule.patience:
            return f"no improvement by {rule.margin:g} in the last {since} trials"
    direction = (
        optuna.study.StudyDirection.MINIMIZE if minimize else optuna.study.StudyDirection.MAXIMIZE
    )
    with experimental_ok():
        evaluator = RegretBoundEvaluator(
            min_n_trials=min(len(complete), rule.min_trials), seed=seed
        )
    try:
        bound = float(evaluator.evaluate(list(trials), direction))
    except ValueError:  # no common search space (a conditional space): no verdict
        return ""
    if math.isfinite(bound) and bound < rule.margin:
        return f"regret bound {bound:.4g} < margin {rule.margin:g}"
    return ""


def _trials_since_improvement(trials: Sequence[Any], minimize: bool, margin: float) -> int:
    """Finished trials since the best last improved by more than `margin`."""
    best, since = math.inf, 0
    for t in trials:
        since += 1
        if t.state.name != "COMPLETE" or t.value is None:
            continue
        value = t.value if minimize else -t.value
        if value < best - margin or best == math.inf:
            best, since = value, 0
        else:
            best = min(best, value)
    return since


class StudyStopper:
    """The Optuna callback that stops a study when `verdict` says so; `reason` tells why."""

    def __init__(self, settings: dict[str, Any], note: Callable[[str], None] | None = None):
        self.settings, self.note, self.reason = settings, note, ""

    def __call__(self, study: Any, trial: Any) -> None:
        from tuner.records import FINISHED, counted

        finished = sorted(
            counted(study.get_trials(deepcopy=False, states=FINISHED)),
            key=lambda t: t.datetime_complete,
        )
        minimize = study.direction.name == "MINIMIZE"
        self.reason = verdict(finished, minimize, self.settings, seed=len(finished))
        if self.reason:
            if self.note:
                self.note(f"study stopped early: {self.reason}")
            study.stop()

    @property
    def stopped(self) -> bool:
        return bool(self.reason)
