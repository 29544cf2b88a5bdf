"""Search spaces: YAML -> validated SearchSpace -> Optuna distributions, grids and RunConfigs.

A space file holds a name and description, `base` (a partial RunConfig), `objective`, the
default `sampler`, `pruner`, `n_trials`, `seed`, `timeout`, and `params`: each a float, int or
categorical distribution over a RunConfig field, named by dotted path or by a short alias.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from tuner import metrics
from tuner.config import RunConfig, apply_overrides, field_type, from_dict, load_yaml, set_path
from tuner.errors import ConfigError
from tuner.samplers import check as check_search
from tuner.samplers import parse_choice
from tuner.terminator import parse_terminate

ALIASES = {
    "learning_rate": "optim.lr",
    "lr": "optim.lr",
    "batch_size": "train.batch_size",
    "seq_len": "train.seq_len",
    "dropout": "model.dropout",
    "model_size": "model.size",
    "weight_decay": "optim.weight_decay",
    "warmup_fraction": "schedule.warmup_fraction",
    "arch": "model.arch",
}
SHORT_NAMES = {
    "learning_rate": "lr",
    "batch_size": "batch",
    "seq_len": "seq",
    "model_size": "size",
    "weight_decay": "wd",
    "warmup_fraction": "warmup",
}
"""How tables and progress lines head the usual params (a dotted path: its last part)."""


def short_name(param: str) -> str:
    return SHORT_NAMES.get(param, param.rsplit(".", 1)[-1])


TOP_KEYS = (
    "name",
    "description",
    "base",
    "objective",
    "sampler",
    "pruner",
    "n_trials",
    "seed",
    "timeout",
    "params",
    "terminate",
    "points",
)
POINT = "point"
"""The one param of a space of fixed `points`: the index of the point a trial runs."""
PARAM_KEYS = ("type", "low", "high", "log", "step", "choices", "grid")
SEED_MAX = 2**32 - 1
"""Optuna's samplers and numpy take seeds in 0..2**32-1."""
MAX_TRIALS = 100_000
"""More trials than this is a typo (the queue is filled at creation, one row a trial)."""


@dataclass(frozen=True)
class Objective:
    metric: str = "val_loss"
    direction: str = "minimize"


@dataclass(frozen=True)
class ParamSpec:
    name: str
    """The name Optuna stores (as written in the space file)."""
    path: str
    """The RunConfig field it sets."""
    kind: str
    """float | int | categorical"""
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()
    grid: tuple = ()

    def distribution(self) -> optuna.distributions.BaseDistribution:
        if self.kind == "categorical":
            return optuna.distributions.CategoricalDistribution(list(self.choices))
        if self.kind == "int":
            return optuna.distributions.IntDistribution(
                int(self.low), int(self.high), log=self.log, step=int(self.step or 1)
            )
        return optuna.distributions.FloatDistribution(
            float(self.low), float(self.high), log=self.log, step=self.step
        )

    def describe(self) -> str:
        if self.kind == "categorical":
            return "categorical {" + ", ".join(map(str, self.choices)) + "}"
        extra = " log" if self.log else f" step {self.step}" if self.step else ""
        return f"{self.kind} [{self.low}, {self.high}]{extra}"

    def grid_values(self) -> list:
        if self.grid:
            return list(self.grid)
        if self.kind == "categorical":
            return list(self.choices)
        if self.kind == "int" and not self.log:
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.kind == "float" and self.step:
            n = int(round((self.high - self.low) / self.step))
            return [self.low + i * self.step for i in range(n + 1)]
        raise ConfigError(f"params.{self.name}: grid search needs explicit `grid` values")


@dataclass(frozen=True)
class SearchSpace:
    name: str
    description: str
    base: RunConfig
    objectives: tuple[Objective, ...]
    sampler: str
    pruner: str
    n_trials: int
    seed: int
    timeout: float | None
    params: tuple[ParamSpec, ...]
    raw: dict = field(default_factory=dict, compare=False)
    """The parsed YAML, stored in the study so nothing else is needed to resume it."""
    sampler_options: dict = field(default_factory=dict)
    """Options the space gives its sampler (`sampler: {name: tpe, ...}`); the rest default."""
    pruner_options: dict = field(default_factory=dict)
    terminate: dict | None = None
    """Stop the study early when it has stalled (tuner.terminator); None = run every trial."""
    points: tuple[dict[str, Any], ...] = ()
    """Fixed trials, each a set of overrides on `base`, run once each (the `point` param)."""

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        return {p.name: p.distribution() for p in self.params}

    def grid(self) -> dict[str, list]:
        return {p.name: p.grid_values() for p in self.params}

    def grid_points(self) -> list[dict[str, Any]]:
        grid = self.grid()
        names = list(grid)
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*grid.values())]

    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.grid().values())

    def apply(self, values: dict[str, Any], config: RunConfig | None = None) -> RunConfig:
        """The base config (or `config`) with sampled values set at their paths."""
        config = config or self.base
        by_name = {p.name: p for p in self.params}
        for name, value in values.items():
            if name == POINT and self.points:  # a fixed point: its fields, validated together
                config = apply_overrides(
                    config, list(self.points[value].items()), f"points[{value}]"
                )
                continue
            config = set_path(config, by_name[name].path if name in by_name else name, value)
        return config

    def with_settings(self, base: RunConfig | None = None, **changes: Any) -> SearchSpace:
        """A copy with CLI choices (sampler, pruner, n_trials, seed, timeout) and a new base
        config applied, validated again as a whole."""
        raw = {**self.raw, **{k: v for k, v in changes.items() if v is not None}}
        return parse_space(raw, base or self.base)


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate a space file; errors name the file and key."""
    raw = load_yaml(path)
    try:
        return parse_space(raw)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def parse_space(raw: Any, base: RunConfig | None = None) -> SearchSpace:
    if not isinstance(raw, dict):
        raise ConfigError("expected a mapping at the top level")
    for key in raw:
        if key not in TOP_KEYS:
            raise ConfigError(f"{key}: unknown key (known: {', '.join(TOP_KEYS)})")
    raw = {k: v for k, v in raw.items() if v is not None or k in ("timeout",)}
    if base is None:
        base = _in_section("base", lambda: from_dict(RunConfig, raw.get("base") or {}))
    name = _typed(raw, "name", str, "unnamed")
    points = _points(raw.get("points"), base)
    sampler, sampler_options = parse_choice(
        raw.get("sampler"), "sampler", "grid" if points else "tpe"
    )
    pruner, pruner_options = parse_choice(raw.get("pruner"), "pruner", "none")
    n_trials = _typed(raw, "n_trials", int, 10)
    seed = _typed(raw, "seed", int, 0)
    timeout = raw.get("timeout")
    if not 1 <= n_trials <= MAX_TRIALS:
        raise ConfigError(f"n_trials: must be between 1 and {MAX_TRIALS}, got {n_trials}")
    if not 0 <= seed <= SEED_MAX:
        raise ConfigError(f"seed: must be between 0 and {SEED_MAX} (2**32 - 1), got {seed}")
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise ConfigError(f"timeout: must be a positive number of seconds, got {timeout!r}")
    objectives = _objectives(raw.get("objective"), base.eval.metric_names())
    if len(objectives) > 1 and pruner != "none":
        raise ConfigError("pruner: pruning needs a single objective; use `pruner: none`")
    params_raw = raw.get("params") or {}
    if not isinstance(params_raw, dict):
        raise ConfigError("params: expected a mapping of name -> distribution")
    params = tuple(_param(name, spec, base) for name, spec in params_raw.items())
    if points:
        if params or sampler != "grid":
            raise ConfigError("points: a space of fixed points takes no params and runs on grid")
        params = (ParamSpec(POINT, POINT, "categorical", choices=tuple(range(len(points)))),)
    _check_distinct_paths(params)
    space = SearchSpace(
        name=name,
        description=_typed(raw, "description", str, ""),
        base=base,
        objectives=objectives,
        sampler=sampler,
        pruner=pruner,
        n_trials=n_trials,
        seed=seed,
        timeout=float(timeout) if timeout else None,
        params=params,
        raw={**raw, "base": base.to_dict()},
        sampler_options=sampler_options,
        pruner_options=pruner_options,
        terminate=parse_terminate(raw.get("terminate"), len(objectives)),
        points=points,
    )
    check_search(space)
    if sampler == "grid":
        if not params:
            raise ConfigError("params: grid search needs at least one param")
        size = math.prod(len(p.grid_values()) for p in params)
        if size > MAX_TRIALS:
            raise ConfigError(f"params: the grid has {size} points, more than {MAX_TRIALS}")
        space = dataclasses.replace(space, n_trials=space.grid_size())  # every point, once
    if sampler == "cmaes" and len(objectives) > 1:
        raise ConfigError("sampler: cmaes handles a single objective; use nsga2")
    return space


def _points(raw: Any, base: RunConfig) -> tuple[dict[str, Any], ...]:
    """Fixed points: mappings of dotted RunConfig paths to values, each valid on `base`."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        raise ConfigError("points: expected a non-empty list of {dotted.path: value} mappings")
    for i, point in enumerate(raw):
        if not isinstance(point, dict) or not point:
            raise ConfigError(f"points[{i}]: expected a mapping of dotted config paths to values")
        apply_overrides(base, list(point.items()), f"points[{i}]")
    return tuple(dict(point) for point in raw)


def _check_distinct_paths(params: tuple[ParamSpec, ...]) -> None:
    """Two params on one field (`learning_rate` and `optim.lr`) would overwrite each other."""
    seen: dict[str, str] = {}
    for p in params:
        if p.path in seen:
            raise ConfigError(
                f"params.{p.name}: sets {p.path}, as params.{seen[p.path]} does; keep one"
            )
        seen[p.path] = p.name


def _in_section(section: str, build: typing.Callable[[], Any]) -> Any:
    try:
        return build()
    except ConfigError as err:
        raise ConfigError(f"{section}.{err}") from None


def _typed(raw: dict, key: str, tp: type, default: Any) -> Any:
    value = raw.get(key, default)
    if tp is int and isinstance(value, bool) or not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")
    return value


def _objectives(raw: Any, task_metrics: list[str]) -> tuple[Objective, ...]:
    """The objectives; a task metric (`task.NAME.METRIC`) only when base.eval has the task."""
    items = raw if isinstance(raw, list) else [raw or {}]
    out = []
    for i, item in enumerate(items):
        where = f"objective[{i}]" if isinstance(raw, list) else "objective"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: expected a mapping with metric and direction")
        unknown = set(item) - {"metric", "direction"}
        if unknown:
            raise ConfigError(
                f"{where}.{sorted(unknown)[0]}: unknown key (known: metric, direction)"
            )
        metric = item.get("metric", "val_loss")
        known = metrics.OBJECTIVE_METRICS + tuple(task_metrics)
        if metric not in known:
            hint = "" if task_metrics else "; task.NAME.METRIC needs the task in base.eval.tasks"
            raise ConfigError(
                f"{where}.metric: unknown metric {metric!r} (one of {', '.join(known)}{hint})"
            )
        direction = item.get("direction", metrics.direction(metric))
        if direction not in ("minimize", "maximize"):
            raise ConfigError(f"{where}.direction: must be minimize or maximize, got {direction!r}")
        out.append(Objective(metric, direction))
    if not out:
        raise ConfigError("objective: at least one objective is needed")
    return tuple(out)


def _param(name: Any, spec: Any, base: RunConfig) -> ParamSpec:
    where = f"params.{name}"
    if not isinstance(name, str):
        raise ConfigError(f"{where}: param names must be strings")
    path = ALIASES.get(name, name)
    try:
        tp = field_type(path)
    except ConfigError:
        raise ConfigError(
            f"{where}: unknown param (not an alias or RunConfig path; aliases: "
            f"{', '.join(sorted(ALIASES))})"
        ) from None
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a mapping with low/high or choices")
    for key in spec:
        if key not in PARAM_KEYS:
            raise ConfigError(f"{where}.{key}: unknown key (known: {', '.join(PARAM_KEYS)})")
    kind = spec.get("type")
    if kind is None:
        if "choices" in spec:
            kind = "categorical"
        elif tp is int or (
            isinstance(spec.get("low"), int)
            and isinstance(spec.get("high"), int)
            and tp is not float
        ):
            kind = "int"
        else:
            kind = "float"
    if kind not in ("float", "int", "categorical"):
        raise ConfigError(f"{where}.type: must be float, int or categorical, got {kind!r}")
    if "grid" in spec and not isinstance(spec["grid"], list):
        raise ConfigError(f"{where}.grid: expected a list of values")
    grid = tuple(spec.get("grid") or ())
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}.choices: must be a non-empty list")
        for value in choices:
            _check_value(base, path, value, where)
        for value in grid:
            if value not in choices:
                raise ConfigError(f"{where}.grid: value {value!r} is not one of the choices")
        return ParamSpec(name, path, kind, choices=tuple(choices), grid=grid)
    if "choices" in spec:
        raise ConfigError(f"{where}.choices: only for type categorical")
    if "low" not in spec or "high" not in spec:
        raise ConfigError(f"{where}: needs low and high (or choices)")
    low, high = spec["low"], spec["high"]
    for key, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}.{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}.{key}: expected a finite number, got {value!r}")
        if kind == "int" and not float(value).is_integer():
            raise ConfigError(f"{where}.{key}: expected an integer, got {value!r}")
    if low > high:
        raise ConfigError(f"{where}: low ({low}) > high ({high})")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}.log: expected true/false, got {log!r}")
    if log and low <= 0:
        raise ConfigError(f"{where}.log: needs low > 0, got low={low}")
    step = spec.get("step")
    if step is not None:
        if (
            isinstance(step, bool)
            or not isinstance(step, int | float)
            or not math.isfinite(step)
            or step <= 0
        ):
            raise ConfigError(f"{where}.step: must be a positive finite number, got {step!r}")
        if log:
            raise ConfigError(f"{where}.step: cannot be combined with log")
        if kind == "int" and not float(step).is_integer():
            raise ConfigError(f"{where}.step: an int param needs a whole step, got {step!r}")
    if kind == "int":
        low, high = int(low), int(high)
        step = int(step) if step else None
    else:
        low, high = float(low), float(high)
        step = float(step) if step else None
    for value in (low, high, *grid):
        _check_value(base, path, value, where)
    for value in grid:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            raise ConfigError(f"{where}.grid: value {value!r} is outside [{low}, {high}]")
        if step and not _on_step(value, low, step):
            raise ConfigError(f"{where}.grid: value {value!r} is not low + a multiple of {step}")
    return ParamSpec(name, path, kind, low=low, high=high, log=log, step=step, grid=grid)


def _on_step(value: float, low: float, step: float) -> bool:
    steps = (value - low) / step
    return abs(steps - round(steps)) < 1e-9 * max(1.0, abs(steps))


def _check_value(base: RunConfig, path: str, value: Any, where: str) -> None:
    try:
        set_path(base, path, value)
    except ConfigError as err:
        raise ConfigError(f"{where}: value {value!r} is invalid ({err})") from None
