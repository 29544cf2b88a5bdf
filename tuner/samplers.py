"""The sampler and pruner registries: a space's `sampler`/`pruner` name -> an Optuna object.

Every sampler is seeded from the study seed. Pruners compare trials at token milestones,
which are numbered 0..M-1 in every trial whatever its batch size or sequence length.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, Protocol

import optuna

from tuner.config import RunConfig
from tuner.quiet import experimental_ok


class SearchSpace(Protocol):
    """What a sampler or pruner needs to know of a search space (tuner.space.SearchSpace)."""

    sampler: str
    pruner: str
    n_trials: int
    base: RunConfig

    def grid(self) -> dict[str, list[Any]]: ...


# tuner chooses Optuna's experimental features on purpose and reports outcomes itself
optuna.logging.set_verbosity(optuna.logging.ERROR)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _tpe(space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
    startup = min(10, max(2, space.n_trials // 3))
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)


def _nsga2(space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
    population = max(4, min(50, space.n_trials // 2))
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=population)


SAMPLER_FACTORIES: dict[str, Callable[[SearchSpace, int], optuna.samplers.BaseSampler]] = {
    "grid": lambda space, seed: optuna.samplers.GridSampler(space.grid(), seed=seed),
    "random": lambda space, seed: optuna.samplers.RandomSampler(seed=seed),
    "tpe": _tpe,
    "cmaes": lambda space, seed: optuna.samplers.CmaEsSampler(
        seed=seed, warn_independent_sampling=False
    ),
    "nsga2": _nsga2,
    "qmc": lambda space, seed: optuna.samplers.QMCSampler(
        seed=seed, warn_independent_sampling=False
    ),
    "gp": lambda space, seed: optuna.samplers.GPSampler(seed=seed),
}
PRUNER_FACTORIES: dict[str, Callable[[SearchSpace], optuna.pruners.BasePruner]] = {
    "none": lambda space: optuna.pruners.NopPruner(),
    "median": lambda space: optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    "hyperband": lambda space: optuna.pruners.HyperbandPruner(
        min_resource=1, max_resource=space.base.train.milestones, reduction_factor=3
    ),
    "successive-halving": lambda space: optuna.pruners.SuccessiveHalvingPruner(
        min_resource=1, reduction_factor=3
    ),
}
SAMPLERS = tuple(SAMPLER_FACTORIES)
PRUNERS = tuple(PRUNER_FACTORIES)


def make_sampler(space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
    with experimental_ok():
        return SAMPLER_FACTORIES[space.sampler](space, seed)


def make_pruner(space: SearchSpace) -> optuna.pruners.BasePruner:
    with experimental_ok():
        return PRUNER_FACTORIES[space.pruner](space)
