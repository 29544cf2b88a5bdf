"""Warm starts: seed a new study from an earlier study's finished trials
(`tuner study create NAME --space S --warm-start OTHER`).

Two ways, chosen by whether the two studies' results are comparable:

- same base config and objective (same data, tokenizer, budget, milestones: the values mean
  the same thing): OTHER's finished trials are added as prior observations
  (`study.add_trials`), so the sampler models them from the first trial and the pruner
  compares against their curves. They are marked `records.OBSERVED` and do not count toward
  the new study's trials: the new study still runs `n_trials` of its own.
- otherwise (a bigger budget, another corpus): OTHER's values are not on this study's scale,
  so its `top` best distinct configurations are queued first and run again here; they count
  as this study's trials and give the sampler its first, good, points.

Either way the spaces must match: the same params with the same distributions (else a
sampler would see two spaces and drop the params that differ), and the same objective.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner import records
from tuner.errors import ConfigError
from tuner.space import SearchSpace, parse_space

DEFAULT_TOP = 3


@dataclass(frozen=True)
class WarmStart:
    """What a warm start will do, decided (and validated) before anything is written."""

    source: str
    observations: tuple[FrozenTrial, ...]
    """Trials to add as prior observations (comparable studies), else empty."""
    seeds: tuple[FrozenTrial, ...]
    """Trials whose configurations are queued first (incomparable studies), else empty."""

    def describe(self) -> str:
        if self.observations:
            return f"{len(self.observations)} trials of {self.source} as prior observations"
        return f"the {len(self.seeds)} best configurations of {self.source} queued first"


def plan_warm_start(
    source: str, other: optuna.Study, space: SearchSpace, top: int = DEFAULT_TOP
) -> WarmStart:
    """Check that `other` can warm-start a study of `space`; errors name `--warm-start`."""
    where = f"--warm-start {source}"
    record = records.StudyRecord.of(other)
    if record is None:
        raise ConfigError(f"{where}: study was not created by tuner (no stored space)")
    if top < 1:
        raise ConfigError(f"--warm-start-top: must be >= 1, got {top}")
    try:
        theirs = parse_space(record.space)
    except ConfigError as err:
        raise ConfigError(f"{where}: its stored space is not valid here ({err})") from None
    _check_compatible(where, theirs, space)
    finished = [
        t
        for t in other.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        if not t.user_attrs.get(records.OBSERVED)
    ]
    complete = [t for t in finished if t.state == TrialState.COMPLETE]
    if not complete:
        raise ConfigError(f"{where}: it has no complete trial to start from")
    if _comparable(theirs, space):
        return WarmStart(source, tuple(finished), ())
    sign = 1 if space.directions[0] == "minimize" else -1
    best, seen = [], set()
    for t in sorted(complete, key=lambda t: sign * t.value):
        key = tuple(sorted((k, repr(v)) for k, v in t.params.items()))
        if key not in seen:
            seen.add(key)
            best.append(t)
        if len(best) == top:
            break
    return WarmStart(source, (), tuple(best))


def _check_compatible(where: str, theirs: SearchSpace, ours: SearchSpace) -> None:
    mine, other = ours.distributions(), theirs.distributions()
    if set(mine) != set(other):
        missing = sorted(set(mine) ^ set(other))
        raise ConfigError(
            f"{where}: incompatible space: params differ ({', '.join(missing)} in one space only)"
        )
    for name, dist in mine.items():
        if dist != other[name]:
            raise ConfigError(
                f"{where}: incompatible space: params.{name} is {_show(dist)} here but "
                f"{_show(other[name])} there"
            )
    if theirs.objectives != ours.objectives:
        raise ConfigError(
            f"{where}: incompatible objective (the studies optimise different things)"
        )


def _show(dist: optuna.distributions.BaseDistribution) -> str:
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return "{" + ", ".join(map(str, dist.choices)) + "}"
    log = " log" if getattr(dist, "log", False) else ""
    step = f" step {dist.step}" if getattr(dist, "step", None) else ""
    return f"[{dist.low}, {dist.high}]{log}{step}"


def _comparable(theirs: SearchSpace, ours: SearchSpace) -> bool:
    """Values mean the same in both studies: same base config but for the seed."""
    a, b = theirs.base.to_dict(), ours.base.to_dict()
    a.pop("seed", None)
    b.pop("seed", None)
    return a == b


def apply_warm_start(study: optuna.Study, plan: WarmStart) -> None:
    """Add the observations or queue the seeds; call before the study's queue is filled, so
    the seeds run first and the queue tops up around them."""
    for t in plan.observations:
        study.add_trial(
            optuna.trial.create_trial(
                state=t.state,
                value=t.value if t.state == TrialState.COMPLETE else None,
                params=t.params,
                distributions=t.distributions,
                user_attrs={**t.user_attrs, records.OBSERVED: f"{plan.source}#{t.number}"},
                intermediate_values=t.intermediate_values,
            )
        )
    for t in plan.seeds:
        study.enqueue_trial(
            t.params, user_attrs={records.SEEDED: f"{plan.source}#{t.number}"}, skip_if_exists=True
        )
