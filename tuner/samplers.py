"""The sampler and pruner registries: a space's `sampler`/`pruner` -> an Optuna object.

A space names either bare (`sampler: tpe`), which means tuner's defaults below, or as a
mapping with options (`sampler: {name: tpe, n_startup_trials: 8}`); every option not given
keeps its default. The defaults of `tpe` and `hyperband` are the settings that won
bench/search_efficiency.py (see bench/README.md).

Every sampler is seeded from the study seed. Pruners compare trials at token milestones,
which are numbered 0..M-1 in every trial whatever its batch size or sequence length (a
pruner's "step" k is the (k+1)-th milestone, so `min_resource: 1` first compares trials
after their second milestone).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import optuna
from optuna.trial import TrialState

from tuner.config import RunConfig
from tuner.errors import ConfigError
from tuner.optuna_compat import QMC_SAMPLES_CATEGORICALS, whole_study
from tuner.quiet import experimental_ok


class SearchSpace(Protocol):
    """What a sampler or pruner needs to know of a search space (tuner.space.SearchSpace)."""

    sampler: str
    sampler_options: dict[str, Any]
    pruner: str
    pruner_options: dict[str, Any]
    n_trials: int
    base: RunConfig

    def grid(self) -> dict[str, list[Any]]: ...

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]: ...


# tuner reports outcomes itself; the experimental features it picks are each picked under
# tuner.quiet.experimental_ok
optuna.logging.set_verbosity(optuna.logging.ERROR)

AUTO = "auto"
SAMPLER_DEFAULTS: dict[str, dict[str, Any]] = {
    "grid": {},
    "random": {},
    "tpe": {
        "multivariate": True,  # one joint density: learning rate and batch size interact
        "group": True,  # joint densities per group of params that appear together
        "constant_liar": True,  # parallel workers do not all pick the same point
        "n_startup_trials": AUTO,  # startup_trials(n_trials)
        "startup": "qmc",  # startup points from a scrambled Sobol sequence, not random
        "n_ei_candidates": 24,
        "whole_study": False,  # under Hyperband: True learns from every bracket's trials
    },
    "cmaes": {"n_startup_trials": 1},
    "nsga2": {"population_size": AUTO},
    "qmc": {"qmc_type": "sobol", "scramble": True},
    "gp": {"n_startup_trials": 10},
}
PRUNER_DEFAULTS: dict[str, dict[str, Any]] = {
    "none": {},
    "median": {"n_startup_trials": 2, "n_warmup_steps": 1},
    "hyperband": {"min_resource": AUTO, "reduction_factor": 3},  # half_way(milestones)
    "successive-halving": {"min_resource": 1, "reduction_factor": 3, "min_early_stopping_rate": 0},
}
MAX_STARTUP_SKIPS = 64
"""Startup points skipped at most, per trial, for repeating a trial the study already holds."""
CHOICES = {"startup": ("qmc", "random"), "qmc_type": ("sobol", "halton")}
SAMPLERS = tuple(SAMPLER_DEFAULTS)
PRUNERS = tuple(PRUNER_DEFAULTS)


def half_way(milestones: int) -> int:
    """Hyperband's first comparison: the milestone that ends the first half of training.

    Early losses rank trials poorly when big models at low learning rates start slowly: in
    bench/search_efficiency.py (72 random trials) the loss at milestone k of 8 ranked final
    losses with Spearman 0.56, 0.76, 0.88, 0.94 for k = 1..4, and TPE + Hyperband comparing
    from milestone 2 reached random search's median best on 1 seed of 3, from milestone 4 on 2
    at 0.55x its compute.
    """
    return max(1, math.ceil(milestones / 2) - 1)


def startup_trials(n_trials: int) -> int:
    """TPE's startup trials for a study of `n_trials`: a few, as pruning makes them cheap."""
    return min(10, max(3, n_trials // 6))


def parse_choice(raw: Any, key: str, default: str) -> tuple[str, dict[str, Any]]:
    """`tpe` or `{name: tpe, option: value, ...}` -> (name, options given); one-line errors
    name the key (`sampler.group: ...`)."""
    registry = SAMPLER_DEFAULTS if key == "sampler" else PRUNER_DEFAULTS
    if raw is None:
        raw = default
    if isinstance(raw, str):
        name, options = raw, {}
    elif isinstance(raw, dict):
        if not isinstance(raw.get("name"), str):
            raise ConfigError(
                f"{key}.name: a {key} mapping needs a name (one of {', '.join(registry)})"
            )
        name, options = raw["name"], {k: v for k, v in raw.items() if k != "name"}
    else:
        raise ConfigError(f"{key}: expected a name or a mapping with name and options, got {raw!r}")
    if name not in registry:
        raise ConfigError(f"{key}: unknown {key} {name!r} (one of {', '.join(registry)})")
    known = registry[name]
    for option, value in options.items():
        where = f"{key}.{option}"
        if option not in known:
            listed = ", ".join(known) or "none"
            raise ConfigError(f"{where}: unknown option for {name} (known: {listed})")
        _check_option(where, value, known[option], CHOICES.get(option))
    return name, dict(options)


def _check_option(where: str, value: Any, default: Any, choices: tuple | None) -> None:
    if choices is not None:
        if value not in choices:
            raise ConfigError(f"{where}: must be one of {', '.join(choices)}, got {value!r}")
    elif isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
    elif isinstance(default, int) or default == AUTO:
        if value == AUTO and default == AUTO:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            auto = " or auto" if default == AUTO else ""
            raise ConfigError(f"{where}: expected a whole number >= 0{auto}, got {value!r}")


def resolved(space: SearchSpace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The sampler's and the pruner's complete options: defaults, then the space's."""
    sampler = {**SAMPLER_DEFAULTS[space.sampler], **space.sampler_options}
    pruner = {**PRUNER_DEFAULTS[space.pruner], **space.pruner_options}
    if sampler.get("n_startup_trials") == AUTO and space.sampler == "tpe":
        sampler["n_startup_trials"] = startup_trials(space.n_trials)
    if pruner.get("min_resource") == AUTO:
        pruner["min_resource"] = half_way(space.base.train.milestones)
    if sampler.get("population_size") == AUTO:
        sampler["population_size"] = max(4, min(50, space.n_trials // 2))
    return sampler, pruner


def describe(space: SearchSpace) -> dict[str, Any]:
    """What the study's sampler and pruner are, every setting spelled out (MLflow, benches)."""
    sampler, pruner = resolved(space)
    if space.pruner in ("hyperband", "successive-halving"):
        pruner["max_resource"] = space.base.train.milestones
    return {
        "sampler": {"name": space.sampler, **sampler},
        "pruner": {"name": space.pruner, **pruner},
    }


def describe_search(space: SearchSpace) -> str:
    """`describe` as one line, e.g. for an MLflow param."""
    return "; ".join(
        f"{part} " + ", ".join(f"{k}={v}" for k, v in options.items())
        for part, options in describe(space).items()
    )


def check(space: SearchSpace) -> None:
    """Options that depend on the rest of the space (milestones)."""
    _, pruner = resolved(space)
    milestones = space.base.train.milestones
    if "min_resource" in pruner and not 1 <= pruner["min_resource"] < milestones:
        raise ConfigError(
            f"pruner.min_resource: must be 1..{milestones - 1} (train.milestones is "
            f"{milestones}), got {pruner['min_resource']}"
        )
    if "reduction_factor" in pruner and pruner["reduction_factor"] < 2:
        raise ConfigError(
            f"pruner.reduction_factor: must be >= 2, got {pruner['reduction_factor']}"
        )


class StartupThenSampler(optuna.samplers.BaseSampler):
    """`startup` for a study's first `n_startup` finished trials, then `main`.

    Lets TPE begin from quasi-random points (a scrambled Sobol sequence covers a space more
    evenly than as many random draws). The phase is decided once per trial, so one trial is
    never sampled half by each.
    """

    def __init__(
        self,
        startup: optuna.samplers.BaseSampler,
        main: optuna.samplers.BaseSampler,
        n_startup: int,
    ) -> None:
        self.startup, self.main, self.n_startup = startup, main, n_startup
        self._phase: dict[int, optuna.samplers.BaseSampler] = {}

    def _for(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> Any:
        if trial.number not in self._phase:
            done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
            self._phase[trial.number] = self.startup if len(done) < self.n_startup else self.main
        return self._phase[trial.number]

    def reseed_rng(self) -> None:
        self.startup.reseed_rng()
        self.main.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study, trial: Any) -> dict[str, Any]:
        return self._for(study, trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: Any, search_space: dict) -> dict:
        sampler = self._for(study, trial)
        point = sampler.sample_relative(study, trial, search_space)
        if sampler is self.startup:  # skip points already run (a warm start's seeds)
            tried = whole_study(study).get_trials(deepcopy=False)
            seen = [{k: t.params.get(k) for k in point} for t in tried if t.params]
            for _ in range(MAX_STARTUP_SKIPS):
                if point not in seen:
                    break
                point = sampler.sample_relative(study, trial, search_space)
        return point

    def sample_independent(self, study: optuna.Study, trial: Any, name: str, dist: Any) -> Any:
        return self._for(study, trial).sample_independent(study, trial, name, dist)

    def before_trial(self, study: optuna.Study, trial: Any) -> None:
        self.main.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: Any, state: Any, values: Any) -> None:
        self.main.after_trial(study, trial, state, values)
        self._phase.pop(trial.number, None)


class WholeStudySampler(optuna.samplers.BaseSampler):
    """`inner`, always shown the whole study.

    Under Hyperband, Optuna hands a sampler the trials of the new trial's bracket only, so
    with 3 brackets TPE learns from a third of the study and spends its startup trials once
    per bracket. Here it learns from all of them (TPE ranks a pruned trial by how far it got).
    Opt-in (`sampler: {name: tpe, whole_study: true}`): in bench/search_efficiency.py it made
    TPE settle on small fast-starting models whose early losses survive the first rung, and
    end worse than the per-bracket view (see bench/README.md). With the default first rung
    half-way, 8 milestones make one bracket, where both views are the same.
    """

    def __init__(self, inner: optuna.samplers.BaseSampler) -> None:
        self.inner = inner

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study, trial: Any) -> dict[str, Any]:
        return self.inner.infer_relative_search_space(whole_study(study), trial)

    def sample_relative(self, study: optuna.Study, trial: Any, search_space: dict) -> dict:
        return self.inner.sample_relative(whole_study(study), trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: Any, name: str, dist: Any) -> Any:
        return self.inner.sample_independent(whole_study(study), trial, name, dist)

    def before_trial(self, study: optuna.Study, trial: Any) -> None:
        self.inner.before_trial(whole_study(study), trial)

    def after_trial(self, study: optuna.Study, trial: Any, state: Any, values: Any) -> None:
        self.inner.after_trial(whole_study(study), trial, state, values)


class SpaceQMCSampler(optuna.samplers.QMCSampler):
    """A QMC sampler told its space up front, so its very first point is quasi-random too
    (Optuna's draws the first trial at random and reads the space off it)."""

    def __init__(self, space: dict[str, Any], **kwargs: Any) -> None:
        with experimental_ok():
            super().__init__(warn_independent_sampling=False, **kwargs)
        self.space = space

    def infer_relative_search_space(self, study: optuna.Study, trial: Any) -> dict[str, Any]:
        if QMC_SAMPLES_CATEGORICALS:
            return dict(self.space)
        return {
            name: dist
            for name, dist in self.space.items()
            if not isinstance(dist, optuna.distributions.CategoricalDistribution)
        }


def _tpe(space: SearchSpace, seed: int, o: dict[str, Any]) -> optuna.samplers.BaseSampler:
    n = o["n_startup_trials"]
    tpe = optuna.samplers.TPESampler(
        seed=seed,
        n_startup_trials=n,
        multivariate=o["multivariate"],
        group=o["group"] and o["multivariate"],
        constant_liar=o["constant_liar"],
        n_ei_candidates=o["n_ei_candidates"],
    )
    sampler: optuna.samplers.BaseSampler = tpe
    if o["startup"] == "qmc" and n > 0:
        qmc = SpaceQMCSampler(space.distributions(), scramble=True, seed=seed)
        sampler = StartupThenSampler(qmc, tpe, n)
    return WholeStudySampler(sampler) if o["whole_study"] else sampler


class QueuedGridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler for a grid tuner queues (tuner.queue enqueues every point once).

    Optuna's `after_trial` stops a study once its own bookkeeping says the grid is covered, and
    reads a `grid_id` an enqueued trial never gets: with one point left it raises KeyError (a
    one-point grid always). Here the queue decides when the grid is done, so it is a no-op.
    """

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        return None


SAMPLER_FACTORIES: dict[
    str, Callable[[SearchSpace, int, dict[str, Any]], optuna.samplers.BaseSampler]
] = {
    "grid": lambda space, seed, o: QueuedGridSampler(space.grid(), seed=seed),
    "random": lambda space, seed, o: optuna.samplers.RandomSampler(seed=seed),
    "tpe": _tpe,
    "cmaes": lambda space, seed, o: optuna.samplers.CmaEsSampler(
        seed=seed, n_startup_trials=o["n_startup_trials"], warn_independent_sampling=False
    ),
    "nsga2": lambda space, seed, o: optuna.samplers.NSGAIISampler(
        seed=seed, population_size=o["population_size"]
    ),
    "qmc": lambda space, seed, o: optuna.samplers.QMCSampler(
        seed=seed, qmc_type=o["qmc_type"], scramble=o["scramble"], warn_independent_sampling=False
    ),
    "gp": lambda space, seed, o: optuna.samplers.GPSampler(
        seed=seed, n_startup_trials=o["n_startup_trials"]
    ),
}
PRUNER_FACTORIES: dict[str, Callable[[SearchSpace, dict[str, Any]], optuna.pruners.BasePruner]] = {
    "none": lambda space, o: optuna.pruners.NopPruner(),
    "median": lambda space, o: optuna.pruners.MedianPruner(
        n_startup_trials=o["n_startup_trials"], n_warmup_steps=o["n_warmup_steps"]
    ),
    "hyperband": lambda space, o: optuna.pruners.HyperbandPruner(
        min_resource=o["min_resource"],
        max_resource=space.base.train.milestones,
        reduction_factor=o["reduction_factor"],
    ),
    "successive-halving": lambda space, o: optuna.pruners.SuccessiveHalvingPruner(
        min_resource=o["min_resource"],
        reduction_factor=o["reduction_factor"],
        min_early_stopping_rate=o["min_early_stopping_rate"],
    ),
}


def make_sampler(space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
    with experimental_ok():
        return SAMPLER_FACTORIES[space.sampler](space, seed, resolved(space)[0])


def make_pruner(space: SearchSpace) -> optuna.pruners.BasePruner:
    with experimental_ok():
        return PRUNER_FACTORIES[space.pruner](space, resolved(space)[1])
