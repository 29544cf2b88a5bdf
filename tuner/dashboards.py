"""Dashboards, one way: study -> plain data (`gather`, here) -> plotly figures
(tuner.figures) -> one HTML page (tuner.page).

This module is plain Python and is what the tests check; the figures only turn its data into
plots, so a wrong number is always a gather bug.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import optuna

from tuner import metrics
from tuner.errors import ConfigError
from tuner.metrics import COST_AXES
from tuner.quiet import experimental_ok
from tuner.records import FINISHED, TrialRecord
from tuner.units import finite

if TYPE_CHECKING:
    from tuner.study import StudyHandle
MAX_CURVES = 400
"""Learning curves drawn at most; the best trials are always among them."""
TOP_N = 15
MIN_IMPORTANCE_TRIALS = 5
"""Below this many complete trials an importance estimate is noise, so none is drawn."""
IMPORTANCE_SAMPLE = 1000


STATE_WORDS = {
    "COMPLETE": "complete",
    "PRUNED": "pruned",
    "FAIL": "failed",
    "RUNNING": "running",
    "WAITING": "waiting",
}


class NoCompleteTrials(ConfigError):
    """The study has nothing to draw yet."""


# ================================================================ gather the data


@dataclass(frozen=True)
class TrialPoint(TrialRecord):
    """A finished trial's record with what the dashboards draw it by."""

    group: str = ""
    """Model size (with the architecture when that varies too): the colour of a point."""
    learning_rate: float | None = None
    batch_size: int | None = None
    numbers: dict[str, float] = field(default_factory=dict)
    """Every finite metric and cost figure, for fast look-ups."""

    @property
    def stopped_early(self) -> bool:
        return self.outcome in ("pruned", "diverged")

    def metric(self, name: str) -> float | None:
        """A finite metric or cost figure, else None."""
        return self.numbers.get(name)


@dataclass(frozen=True)
class History:
    """Complete trials in trial order, with the best value so far and the cumulative cost."""

    numbers: list[int]
    values: list[float]
    best: list[float]
    cumulative: dict[str, list[float]]
    """Cost key -> cost of every finished trial (pruned and failed too) up to each trial."""


@dataclass
class DashboardData:
    study: str
    space: str
    sampler: str
    pruner: str
    objectives: list[tuple[str, str]]
    """(metric, direction) per objective; the first one drives history and ranking."""
    metric: str
    """The y-axis of the perplexity plots: val_perplexity, or val_bpb across tokenizers."""
    param_names: list[str]
    param_scales: dict[str, str]
    """Param name -> linear | log | categorical, as the search space defines it."""
    trials: list[TrialPoint]
    """Finished trials (complete, pruned, failed) in trial order; running ones are counted only."""
    running: int
    waiting: int
    cost_keys: list[str]
    """Cost axes some complete trial has a positive value for."""
    task_metrics: list[str]
    """Downstream task scores (`task.NAME.METRIC`) some complete trial recorded."""
    fronts: dict[str, list[int]]
    """x key (n_params or a cost key) -> trial numbers on the Pareto front, by increasing x."""
    history: History
    importance: dict[str, float]
    importance_note: str
    curves: list[int]
    """Trial numbers whose learning curves are drawn."""
    top: list[int]
    tracking_uri: str = ""
    experiment_id: str = ""
    parent_run_id: str = ""
    optuna_trials: list[optuna.trial.FrozenTrial] = field(default_factory=list)
    """Finished and running trials as Optuna keeps them, for Optuna's own plots."""
    max_running: int = 0
    """The most trials that ran at one moment: above 1, several workers shared the study."""
    generated: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))

    @property
    def complete(self) -> list[TrialPoint]:
        return [t for t in self.trials if t.state == "COMPLETE"]

    def by_number(self) -> dict[int, TrialPoint]:
        return {t.number: t for t in self.trials}

    def counts(self) -> dict[str, int]:
        counts = {o: 0 for o in ("complete", "pruned", "diverged", "failed")}
        for t in self.trials:
            counts[t.outcome] += 1
        return counts | {"running": self.running, "waiting": self.waiting}


def gather(handle: StudyHandle, metric: str | None = None) -> DashboardData:
    """Everything the dashboards draw, as plain data; NoCompleteTrials if there is nothing."""
    study = handle.study
    all_trials = study.get_trials(deepcopy=False)
    states = optuna.trial.TrialState
    finished = [TrialRecord.of(t) for t in all_trials if t.state in FINISHED]
    if not any(t.state == "COMPLETE" for t in finished):
        counts = ", ".join(
            f"{sum(t.state == s for t in all_trials)} {STATE_WORDS[s.name]}"
            for s in states
            if any(t.state == s for t in all_trials)
        )
        raise NoCompleteTrials(
            f"study {handle.name!r} has no complete trials yet "
            f"({counts or 'no trials'}); nothing to draw"
        )
    objectives = [(o.metric, o.direction) for o in handle.space.objectives]
    groups = _group_labels(finished)
    trials = sorted((_point(t, groups[t.number]) for t in finished), key=lambda p: p.number)
    complete = [t for t in trials if t.state == "COMPLETE"]
    metric = metric or _default_metric(finished)
    cost_keys = [k for k in COST_AXES if any(t.metric(k) and t.metric(k) > 0 for t in complete)]
    task_metrics = sorted({k for t in complete for k in t.metrics if _is_task_score(k)})
    fronts = {
        key: pareto_front([(t.number, t.metric(key), t.metric(metric)) for t in complete])
        for key in ["n_params", *cost_keys]
    }
    importance, note = param_importance(study, objectives, len(complete))
    ranked = rank(complete, objectives[0][1])
    return DashboardData(
        study=handle.name,
        space=handle.space.name,
        sampler=handle.space.sampler,
        pruner=handle.space.pruner,
        objectives=objectives,
        metric=metric,
        param_names=[p.name for p in handle.space.params]
        or sorted({k for t in trials for k in t.params}),
        param_scales={
            p.name: "categorical" if p.kind == "categorical" else "log" if p.log else "linear"
            for p in handle.space.params
        },
        trials=trials,
        running=sum(t.state == states.RUNNING for t in all_trials),
        waiting=sum(t.state == states.WAITING for t in all_trials),
        cost_keys=cost_keys,
        task_metrics=task_metrics,
        fronts=fronts,
        history=history(trials, objectives[0][1], cost_keys),
        importance=importance,
        importance_note=note,
        curves=pick_curves(trials, ranked),
        top=[t.number for t in ranked[:TOP_N]],
        tracking_uri=handle.tracking_uri,
        experiment_id=handle.experiment_id,
        parent_run_id=handle.parent_run_id,
        optuna_trials=[t for t in all_trials if t.state != states.WAITING],
        max_running=max_overlap(_intervals(all_trials)),
    )


def _intervals(trials: Iterable[optuna.trial.FrozenTrial]) -> list[tuple[float, float]]:
    """(start, end) of every trial that started; a running trial runs until now."""
    now = datetime.now()  # Optuna keeps naive local times
    return [
        (t.datetime_start.timestamp(), (t.datetime_complete or now).timestamp())
        for t in trials
        if t.datetime_start is not None
    ]


def max_overlap(intervals: Iterable[tuple[float, float]]) -> int:
    """The most intervals open at one moment (an interval ending as another starts is not
    open with it)."""
    events = sorted([(end, -1) for _, end in intervals] + [(start, 1) for start, _ in intervals])
    running = most = 0
    for _, step in events:  # at equal times, ends (-1) sort before starts
        running += step
        most = max(most, running)
    return most


def _point(t: TrialRecord, group: str) -> TrialPoint:
    lr = t.config.get("optim", {}).get("lr", t.params.get("learning_rate", t.params.get("lr")))
    batch = t.config.get("train", {}).get("batch_size", t.params.get("batch_size"))
    return TrialPoint(
        **{f.name: getattr(t, f.name) for f in fields(TrialRecord)},
        group=group,
        learning_rate=float(lr) if finite(lr) else None,
        batch_size=int(batch) if finite(batch) else None,
        numbers={k: float(v) for k, v in (t.cost | t.metrics).items() if finite(v)},
    )


def _is_task_score(name: str) -> bool:
    if not name.startswith(metrics.TASK_PREFIX):
        return False
    try:
        return metrics.get(name).objective
    except ConfigError:
        return False


def _group_labels(trials: Sequence[TrialRecord]) -> dict[int, str]:
    """Model size per trial, prefixed by the architecture only when a study varies it."""
    models = {t.number: t.config.get("model", {}) for t in trials}
    archs = {m.get("arch") for m in models.values()}
    return {
        n: (f"{m.get('arch', '?')} " if len(archs) > 1 else "") + str(m.get("size", "?"))
        for n, m in models.items()
    }


def _default_metric(trials: Sequence[TrialRecord]) -> str:
    """Perplexity compares trials only under one tokenizer; bits per byte compares any."""
    tokenizers = {
        json.dumps(t.config.get("tokenizer"), sort_keys=True)
        for t in trials
        if t.state == "COMPLETE"
    }
    return "val_bpb" if len(tokenizers) > 1 else "val_perplexity"


def pareto_front(points: Iterable[tuple[int, float | None, float | None]]) -> list[int]:
    """Ids of the points (id, x, y) no other point beats on both (minimising both), by x.

    Points missing x or y are left out; equal points are all on the front.
    """
    usable = sorted((x, y, i) for i, x, y in points if x is not None and y is not None)
    front: list[int] = []
    best_y = math.inf
    start = 0
    while start < len(usable):  # one pass over groups of equal x
        x = usable[start][0]
        end = start
        while end < len(usable) and usable[end][0] == x:
            end += 1
        lowest = usable[start][1]
        if lowest < best_y:
            front += [i for _, y, i in usable[start:end] if y == lowest]
            best_y = lowest
        start = end
    return front


def rank(complete: Sequence[TrialPoint], direction: str) -> list[TrialPoint]:
    """Complete trials, best first on the first objective."""
    sign = -1.0 if direction == "maximize" else 1.0
    usable = [t for t in complete if t.values and finite(t.values[0])]
    return sorted(usable, key=lambda t: (sign * t.values[0], t.number))


def history(trials: Sequence[TrialPoint], direction: str, cost_keys: Sequence[str]) -> History:
    numbers: list[int] = []
    values: list[float] = []
    best: list[float] = []
    cumulative: dict[str, list[float]] = {k: [] for k in cost_keys}
    spent = dict.fromkeys(cost_keys, 0.0)
    better = max if direction == "maximize" else min
    for t in trials:  # in trial order; every finished trial has cost
        for key in cost_keys:
            spent[key] += max(t.metric(key) or 0.0, 0.0)
        if t.state != "COMPLETE" or not t.values or not finite(t.values[0]):
            continue
        numbers.append(t.number)
        values.append(float(t.values[0]))
        best.append(better(best[-1], values[-1]) if best else values[-1])
        for key in cost_keys:
            cumulative[key].append(spent[key])
    return History(numbers, values, best, cumulative)


def param_importance(
    study: optuna.Study, objectives: Sequence[tuple[str, str]], n_complete: int
) -> tuple[dict[str, float], str]:
    """PED-ANOVA importances of the first objective, or ({}, why not)."""
    if n_complete < MIN_IMPORTANCE_TRIALS:
        return {}, (
            f"importance needs at least {MIN_IMPORTANCE_TRIALS} complete trials "
            f"(this study has {n_complete})"
        )
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    target = None if len(objectives) == 1 else (lambda t: t.values[0])
    try:  # fANOVA takes minutes at 1,000 trials; PED-ANOVA well under a second
        with experimental_ok():  # experimental before Optuna 5
            evaluator = PedAnovaImportanceEvaluator()
        found = get_param_importances(_sampled(study), evaluator=evaluator, target=target)
    except Exception as err:  # noqa: BLE001 - e.g. no param that varies; the plot says why
        return {}, f"importance not available: {err}"
    if not found:
        return {}, "importance not available: no parameter varies across complete trials"
    return dict(found), ""


def _sampled(study: optuna.Study) -> optuna.Study:
    """The study itself, or an in-memory copy of a fixed random sample of its complete trials
    when it has more than IMPORTANCE_SAMPLE (the estimate is as good and 10x faster)."""
    import random

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) <= IMPORTANCE_SAMPLE:
        return study
    copy = optuna.create_study(directions=study.directions)
    copy.add_trials(random.Random(0).sample(complete, IMPORTANCE_SAMPLE))
    return copy


def pick_curves(trials: Sequence[TrialPoint], ranked: Sequence[TrialPoint]) -> list[int]:
    """All curves when few; else the best trials plus an even spread over the rest."""
    with_curve = [t.number for t in trials if t.curve]
    if len(with_curve) <= MAX_CURVES:
        return with_curve
    keep = {t.number for t in ranked[: MAX_CURVES // 4] if t.curve}
    rest = [n for n in with_curve if n not in keep]
    step = len(rest) / (MAX_CURVES - len(keep))
    keep |= {rest[int(i * step)] for i in range(MAX_CURVES - len(keep))}
    return sorted(keep)
