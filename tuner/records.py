"""The trial record: what a tuner trial keeps in Optuna's user attributes, typed.

`objective.py` writes it through the `write_*` functions; every reader (study tables, export,
dashboards, progress, workers) parses a finished trial with `TrialRecord.of`, so the keys
below are the only place the attribute names appear.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner import metrics as registry
from tuner import stores
from tuner.config import RunConfig, from_dict
from tuner.errors import ConfigError
from tuner.units import finite

if TYPE_CHECKING:
    from tuner.train import TrainResult

CONFIG = "config"
METRICS = "metrics"
COST = "cost"
CURVE = "curve"
REASON = "reason"
RUN_ID = "mlflow_run_id"
ORIGIN = "origin_trial"
"""The number whose seed a trial uses: its own, or, for the retry of a lost trial, the lost
trial's (a retry copies the lost trial's user attributes), so the retry reruns it exactly."""
RETRIES = "retry_history"
"""System attribute Optuna's retry callback writes on a retry: the numbers it stands for."""

PRUNED_AT = "pruned at milestone "
"""How the reason of a trial the pruner stopped begins (tuner.train writes it)."""
OBSERVED = "warm_observation"
"""A trial a warm start copied from another study ("STUDY#N"): data for the sampler and the
pruner, not one of this study's trials (tuner.warmstart)."""
SEEDED = "warm_seeded_from"
"""A trial a warm start queued with another study's configuration ("STUDY#N"); it counts."""

INTERRUPTED = "interrupted"
"""The reason of a trial stopped by Ctrl-C or SIGTERM: it does not count toward the target."""
STORE_FAILED = "store failed"
"""The start of the reason of a trial stopped because a store failed: it does not count."""
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
PENDING = (TrialState.WAITING, TrialState.RUNNING)


# ---------------------------------------------------------------- writing (objective.py)


def origin_number(trial: optuna.Trial | FrozenTrial) -> int:
    return int(trial.user_attrs.get(ORIGIN, trial.number))


def write_origin(trial: optuna.Trial) -> int:
    number = origin_number(trial)
    trial.set_user_attr(ORIGIN, number)
    return number


def write_config(trial: optuna.Trial, config: RunConfig) -> None:
    trial.set_user_attr(CONFIG, config.to_dict())


def write_run_id(trial: optuna.Trial, run_id: str) -> None:
    trial.set_user_attr(RUN_ID, run_id)


def write_reason(trial: optuna.Trial, reason: str) -> None:
    trial.set_user_attr(REASON, reason[:2000])


def write_result(trial: optuna.Trial, result: TrainResult) -> None:
    trial.set_user_attr(METRICS, result.metrics)
    trial.set_user_attr(COST, result.cost)
    trial.set_user_attr(CURVE, [[m.tokens_seen, m.metrics["val_loss"]] for m in result.history])
    if result.reason:
        write_reason(trial, result.reason)


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class TrialRecord:
    """One trial as tuner sees it."""

    number: int
    state: str
    """Optuna state name: COMPLETE, PRUNED, FAIL, RUNNING or WAITING."""
    params: dict[str, Any]
    values: tuple[float, ...]
    """Objective values (complete trials only)."""
    config: dict[str, Any]
    """The RunConfig it trained, as plain data."""
    metrics: dict[str, float]
    cost: dict[str, Any]
    curve: tuple[tuple[float, float], ...]
    """(tokens seen, validation loss) at each milestone reached."""
    reason: str
    run_id: str | None
    origin: int
    retry_of: tuple[int, ...]
    """Numbers of the lost trials this one retries."""
    duration: float | None

    @classmethod
    def of(cls, trial: FrozenTrial) -> TrialRecord:
        attrs = trial.user_attrs
        duration = (
            (trial.datetime_complete - trial.datetime_start).total_seconds()
            if trial.datetime_complete and trial.datetime_start
            else None
        )
        curve = tuple((float(x), float(y)) for x, y in attrs.get(CURVE) or () if finite(y))
        return cls(
            number=trial.number,
            state=trial.state.name,
            params=dict(trial.params),
            values=tuple(trial.values) if trial.state == TrialState.COMPLETE else (),
            config=dict(attrs.get(CONFIG) or {}),
            metrics=dict(attrs.get(METRICS) or {}),
            cost=dict(attrs.get(COST) or {}),
            curve=curve,
            reason=str(attrs.get(REASON, "")),
            run_id=attrs.get(RUN_ID),
            origin=origin_number(trial),
            retry_of=tuple(trial.system_attrs.get(RETRIES, ())),
            duration=duration,
        )

    @property
    def outcome(self) -> str:
        """complete | pruned | diverged | failed | running | waiting (diverged is PRUNED too)."""
        if self.state == "PRUNED":
            return "diverged" if self.reason.startswith("diverged") else "pruned"
        return {"COMPLETE": "complete", "FAIL": "failed"}.get(self.state, self.state.lower())

    def value(self, metric: str) -> float | None:
        """The recorded value of a metric or cost figure; None if absent or not finite."""
        source = self.cost if registry.get(metric).source == "cost" else self.metrics
        value = source.get(metric)
        return float(value) if finite(value) else None

    def run_config(self) -> RunConfig:
        """The trial's full RunConfig, validated by this version of tuner."""
        if not self.config:
            raise ConfigError(f"trial {self.number}: no stored config (not a tuner trial)")
        try:
            return from_dict(RunConfig, self.config)
        except ConfigError as err:
            raise ConfigError(
                f"trial {self.number}: stored config is not valid here ({err})"
            ) from None


def short_state(state: str, reason: str) -> tuple[str, str]:
    """(a state that fits a table cell, the reason it does not tell): a trial pruned at
    milestone 1 is `PRUNED@1` and needs no more; any other reason is returned to be told."""
    if state == "PRUNED" and reason.startswith(PRUNED_AT) and reason[len(PRUNED_AT) :].isdigit():
        return f"PRUNED@{reason[len(PRUNED_AT) :]}", ""
    return state, "" if state == "COMPLETE" else reason


# ---------------------------------------------------------------- the study


STUDY = "tuner"
"""The study user attribute that holds the record below."""


@dataclass(frozen=True)
class StudyRecord:
    """What a tuner study keeps about itself: its whole space (base config included) and its
    MLflow locations, so `resume` and any worker need only the study's name and storage."""

    space: dict[str, Any]
    tracking_uri: str
    experiment_id: str
    parent_run_id: str

    @classmethod
    def of(cls, study: optuna.Study) -> StudyRecord | None:
        """The record, or None for a study tuner did not create."""
        raw = study.user_attrs.get(STUDY)
        if not isinstance(raw, dict) or "space" not in raw:
            return None
        uri = stores.resolve(raw["tracking_uri"])  # kept relative to the home (relocatable)
        return cls(raw["space"], uri, raw["experiment_id"], raw["parent_run_id"])

    def write(self, study: optuna.Study) -> None:
        raw = dataclasses.asdict(self) | {"tracking_uri": stores.portable(self.tracking_uri)}
        study.set_user_attr(STUDY, raw)


SCALING = "scaling"
"""The study user attribute of an IsoFLOP study: its plan (written by tuner.scaling.study)."""


def scaling_plan(study: optuna.Study) -> dict[str, Any] | None:
    """The stored IsoFLOP plan, or None for an ordinary study."""
    plan = study.user_attrs.get(SCALING)
    return plan if isinstance(plan, dict) else None


def write_scaling_plan(study: optuna.Study, plan: dict[str, Any]) -> None:
    study.set_user_attr(SCALING, plan)


# ---------------------------------------------------------------- which trials count


def superseded(trials: Iterable[FrozenTrial]) -> set[int]:
    """Numbers of lost trials that have a retry: records, not results."""
    return {n for t in trials for n in t.system_attrs.get(RETRIES, [])}


def counted(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """Finished trials that count toward the target: a lost trial counts through its retry,
    and a trial stopped by Ctrl-C or SIGTERM not at all (resume runs another in its place),
    nor a warm start's prior observation."""
    lost = superseded(trials)
    return [
        t
        for t in trials
        if t.state in FINISHED
        and t.number not in lost
        and not stopped(t.user_attrs.get(REASON))
        and not t.user_attrs.get(OBSERVED)
    ]


def stopped(reason: Any) -> bool:
    """A trial stopped from outside (Ctrl-C, SIGTERM, a failed store): no result, no count."""
    return reason == INTERRUPTED or str(reason or "").startswith(STORE_FAILED)


def pending(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """Queued or running trials: each will end as one counted trial (itself or its retry)."""
    return [t for t in trials if t.state in PENDING]


def retried_as(trials: Iterable[FrozenTrial]) -> dict[int, int]:
    """Lost trial number -> the number of its retry."""
    return {t.system_attrs[RETRIES][-1]: t.number for t in trials if t.system_attrs.get(RETRIES)}
