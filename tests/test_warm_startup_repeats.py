"""A warm-started TPE study must not re-run its source's startup points.

Both studies share the space's seed, so their quasi-random (Sobol) startup sequences are the
same; and under Hyperband the sampler sees one bracket's trials at a time, so a warm study
runs startup points after its seeds. Without a check those points repeat the seeded (or
observed) configurations exactly and spend a trial on a known result.
"""

from __future__ import annotations

import optuna

from tuner.samplers import SpaceQMCSampler, make_pruner, make_sampler
from tuner.space import parse_space

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _space():
    return parse_space(
        {
            "name": "warm-repeats",
            "base": {"train": {"milestones": 8}},
            "n_trials": 8,
            "sampler": "tpe",
            "pruner": "hyperband",
            "seed": 0,
            "params": {
                "learning_rate": {"low": 1e-4, "high": 3e-2, "log": True},
                "dropout": {"low": 0.0, "high": 0.3},
                "model_size": {"choices": ["nano", "micro", "tiny"]},
            },
        }
    )


def _objective(trial: optuna.Trial) -> float:
    lr = trial.suggest_float("learning_rate", 1e-4, 3e-2, log=True)
    dropout = trial.suggest_float("dropout", 0.0, 0.3)
    size = trial.suggest_categorical("model_size", ["nano", "micro", "tiny"])
    loss = abs(lr - 3e-3) * 100 + dropout + ["nano", "micro", "tiny"].index(size) * 0.1
    for step in range(8):
        trial.report(loss + (8 - step) * 0.5, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return loss


def _study(space):
    return optuna.create_study(sampler=make_sampler(space, 0), pruner=make_pruner(space))


def test_warm_started_study_repeats_no_seeded_configuration():
    space = _space()
    cold = _study(space)
    cold.optimize(_objective, n_trials=3)
    seeds = [t.params for t in cold.trials]  # the source's startup (Sobol) points
    warm = _study(space)
    for params in seeds:
        warm.enqueue_trial(params)
    warm.optimize(_objective, n_trials=8)
    keys = [tuple(sorted(t.params.items())) for t in warm.trials]
    assert len(keys) == 8
    assert len(set(keys)) == len(keys), "a startup point repeated a seeded configuration"


def test_cold_startup_points_are_the_sobol_sequence_in_order():
    """The check only skips repeats: a cold study runs the Sobol points in order."""
    space = _space()
    tuned = _study(space)
    tuned.optimize(_objective, n_trials=3)
    plain = optuna.create_study(
        sampler=SpaceQMCSampler(space.distributions(), scramble=True, seed=0),
        pruner=make_pruner(space),
    )
    plain.optimize(_objective, n_trials=3)
    assert [t.params for t in tuned.trials] == [t.params for t in plain.trials]
