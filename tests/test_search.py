"""Search settings: sampler and pruner options reach Optuna as configured, warm starts seed a
study from another, and the study terminator stops a study that cannot improve."""

from __future__ import annotations

import optuna
import pytest

from tests.conftest import TINY_BASE
from tests.helpers import cli, write_space
from tuner import records, stores
from tuner.errors import ConfigError
from tuner.samplers import (
    SpaceQMCSampler,
    StartupThenSampler,
    WholeStudySampler,
    describe,
    make_pruner,
    make_sampler,
    startup_trials,
)
from tuner.space import parse_space
from tuner.terminator import StudyStopper, _trials_since_improvement

PARAMS = {
    "learning_rate": {"low": 1e-3, "high": 1e-2, "log": True},
    "dropout": {"low": 0.0, "high": 0.2},
    "model_size": {"choices": ["nano", "micro"]},
}


def space_of(**top):
    raw = {"name": "s", "base": TINY_BASE, "n_trials": 12, "params": PARAMS}
    return parse_space(raw | top)


def load(name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=stores.default_storage())


# ---------------------------------------------------------------- sampler and pruner settings


def test_bare_names_get_the_shipped_defaults():
    space = space_of(sampler="tpe", pruner="hyperband")
    sampler, pruner = make_sampler(space, 7), make_pruner(space)
    assert isinstance(sampler, StartupThenSampler) and isinstance(sampler.startup, SpaceQMCSampler)
    tpe = sampler.main
    assert tpe._multivariate is True and tpe._group is True and tpe._constant_liar is True
    assert sampler.n_startup == tpe._n_startup_trials == startup_trials(12)
    assert isinstance(pruner, optuna.pruners.HyperbandPruner)
    assert pruner._min_resource == 1 and pruner._reduction_factor == 3
    assert pruner._max_resource == TINY_BASE["train"]["milestones"]


@pytest.mark.parametrize("milestones, first", [(2, 1), (4, 1), (6, 2), (8, 3), (9, 4)])
def test_bare_hyperband_first_compares_half_way(milestones, first):
    """Hyperband's first rung is the milestone that ends the first half of training."""
    base = {**TINY_BASE, "train": {**TINY_BASE["train"], "milestones": milestones}}
    pruner = make_pruner(space_of(base=base, pruner="hyperband"))
    assert pruner._min_resource == first and pruner._max_resource == milestones
    assert describe(space_of(base=base, pruner="hyperband"))["pruner"]["min_resource"] == first


def test_options_given_in_a_space_reach_optuna(tmp_path):
    base = {**TINY_BASE, "train": {**TINY_BASE["train"], "milestones": 8}}
    sampler = {"name": "tpe", "multivariate": False, "startup": "random", "n_startup_trials": 5}
    sampler |= {"whole_study": False}
    whole = make_sampler(space_of(sampler={"name": "tpe", "whole_study": True}), 7)
    assert isinstance(whole, WholeStudySampler) and isinstance(whole.inner, StartupThenSampler)
    pruner = {"name": "hyperband", "min_resource": 2, "reduction_factor": 2}
    space = space_of(base=base, sampler=sampler, pruner=pruner)
    assert describe(space)["sampler"]["n_startup_trials"] == 5
    # through create_study: the study's own sampler and pruner are these
    from tuner.study import create_study

    study = create_study("opts", space).study
    tpe = study.sampler
    assert isinstance(tpe, optuna.samplers.TPESampler)  # startup: random -> TPE's own
    assert tpe._multivariate is False and tpe._group is False and tpe._n_startup_trials == 5
    hb = study.pruner
    assert (hb._min_resource, hb._reduction_factor, hb._max_resource) == (2, 2, 8)
    sh = make_pruner(space_of(base=base, pruner={"name": "successive-halving", "min_resource": 3}))
    assert sh._min_resource == 3 and sh._reduction_factor == 3
    median = make_pruner(space_of(pruner={"name": "median", "n_warmup_steps": 0}))
    assert median._n_warmup_steps == 0 and median._n_startup_trials == 2


def test_qmc_startup_then_tpe():
    """The first n trials are the Sobol sequence's points; after them TPE takes over."""
    space = space_of(sampler={"name": "tpe", "n_startup_trials": 4})
    params = [p.name for p in space.params]

    def run(sampler, n):
        study = optuna.create_study(sampler=sampler)
        study.optimize(
            lambda t: (
                t.suggest_float("learning_rate", 1e-3, 1e-2, log=True)
                + t.suggest_float("dropout", 0.0, 0.2)
                + len(t.suggest_categorical("model_size", ["nano", "micro"]))
            ),
            n_trials=n,
        )
        return [tuple(t.params[p] for p in params) for t in study.trials]

    mixed = run(make_sampler(space, 3), 8)
    sobol = run(SpaceQMCSampler(space.distributions(), scramble=True, seed=3), 4)
    assert mixed[:4] == sobol
    assert len(set(mixed)) == 8


class Recorder(optuna.samplers.RandomSampler):
    """A random sampler that notes how many trials each call was shown."""

    def __init__(self) -> None:
        super().__init__(seed=0)
        self.seen: list[int] = []

    def sample_independent(self, study, trial, name, dist):
        self.seen.append(len(study.get_trials(deepcopy=False)))
        return super().sample_independent(study, trial, name, dist)


@pytest.mark.parametrize("whole", [True, False])
def test_under_hyperband_the_sampler_sees_the_whole_study(whole):
    """Optuna shows a sampler one Hyperband bracket's trials; tuner's TPE sees them all."""
    recorder = Recorder()
    sampler = WholeStudySampler(recorder) if whole else recorder
    pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=9, reduction_factor=3)
    study = optuna.create_study(sampler=sampler, pruner=pruner)

    def objective(trial):
        x = trial.suggest_float("x", 0, 1)
        for step in range(9):
            trial.report(x + 1 / (step + 1), step)
            if trial.should_prune():
                raise optuna.TrialPruned
        return x

    study.optimize(objective, n_trials=12)
    if whole:
        assert recorder.seen == list(range(1, 13))  # every earlier trial, and the new one
    else:
        assert max(recorder.seen) < 12 and len(set(recorder.seen)) < 12


@pytest.mark.parametrize(
    "top, message",
    [
        ({"sampler": {"name": "tpe", "colour": 1}}, "sampler.colour: unknown option for tpe"),
        ({"sampler": {"name": "tpe", "group": "yes"}}, "sampler.group: expected true/false"),
        ({"sampler": {"name": "tpe", "startup": "sobol"}}, "sampler.startup: must be one of"),
        ({"sampler": {"multivariate": True}}, "sampler.name: a sampler mapping needs a name"),
        ({"pruner": {"name": "hyperband", "min_resource": 2}}, "pruner.min_resource: must be 1..1"),
        (
            {"pruner": {"name": "hyperband", "reduction_factor": 1}},
            "pruner.reduction_factor: must be >= 2",
        ),
        ({"terminate": {"margin": 0}}, "terminate.margin: must be a positive number"),
        ({"terminate": {"margin": 0.1, "wait": 3}}, "terminate.wait: unknown key"),
    ],
)
def test_bad_search_settings_are_one_line(tmp_path, top, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        space_of(**top)
    path = write_space(tmp_path / "space.yaml", PARAMS, **top)
    result = cli("space", "validate", str(path))
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert message in result.output


# ---------------------------------------------------------------- warm starts


def _studies() -> list[str]:
    return [s.study_name for s in optuna.get_all_study_summaries(stores.default_storage())]


def test_warm_start_from_a_comparable_study_adds_observations(tmp_path):
    space = write_space(tmp_path / "space.yaml", PARAMS, sampler="tpe", n_trials=3)
    assert cli("study", "create", "first", "--space", str(space)).exit_code == 0
    result = cli("study", "create", "second", "--space", str(space), "--warm-start", "first")
    assert result.exit_code == 0, result.output
    first, second = load("first"), load("second")
    trials = second.get_trials()
    observed = [t for t in trials if t.user_attrs.get(records.OBSERVED)]
    own = [t for t in trials if not t.user_attrs.get(records.OBSERVED)]
    assert [t.params for t in observed] == [t.params for t in first.get_trials()]
    assert [t.value for t in observed] == [t.value for t in first.get_trials()]
    assert observed[0].user_attrs[records.OBSERVED] == "first#0"
    # they are data for the sampler, not the new study's trials: it still ran 3 of its own
    assert len(own) == 3 and all(t.state.name == "COMPLETE" for t in own)
    assert len(records.counted(trials)) == 3 and "3 trials finished" in result.output
    assert all(t.number > max(o.number for o in observed) for t in own)


def test_warm_start_from_another_budget_queues_the_best_configs_first(tmp_path):
    space = write_space(tmp_path / "space.yaml", PARAMS, sampler="random", n_trials=4)
    assert cli("study", "create", "small", "--space", str(space)).exit_code == 0
    small = load("small")
    best = sorted(small.get_trials(), key=lambda t: t.value)[:2]
    result = cli(
        "study",
        "create",
        "big",
        "--space",
        str(space),
        "--set",
        "train.tokens=16384",
        "--n-trials",
        "3",
        "--warm-start",
        "small",
        "--warm-start-top",
        "2",
    )
    assert result.exit_code == 0, result.output
    trials = load("big").get_trials()
    assert len(trials) == 3 and all(t.state.name == "COMPLETE" for t in trials)
    assert [t.params for t in trials[:2]] == [t.params for t in best]
    assert trials[0].user_attrs[records.SEEDED] == f"small#{best[0].number}"
    assert trials[0].user_attrs["cost"]["tokens_seen"] >= 16384  # run again at the new budget
    assert not any(t.user_attrs.get(records.OBSERVED) for t in trials)


@pytest.mark.parametrize(
    "params, message",
    [
        (None, "--warm-start ghost: no study named 'ghost'"),
        ({"learning_rate": PARAMS["learning_rate"]}, "incompatible space: params differ"),
        (
            {**PARAMS, "dropout": {"low": 0.0, "high": 0.3}},
            "incompatible space: params.dropout is [0.0, 0.3] here but [0.0, 0.2] there",
        ),
    ],
)
def test_bad_warm_start_is_one_line_exit_2_and_nothing_written(tmp_path, params, message):
    source = write_space(tmp_path / "source.yaml", PARAMS, n_trials=1)
    assert cli("study", "create", "src", "--space", str(source)).exit_code == 0
    space = write_space(tmp_path / "space.yaml", params or PARAMS, n_trials=1)
    name = "ghost" if params is None else "src"
    result = cli("study", "create", "b", "--space", str(space), "--warm-start", name)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output
    assert "b" not in _studies()


# ---------------------------------------------------------------- the study terminator


def _run_with_stopper(objective, settings, n_trials=30):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    stopper = StudyStopper(settings)
    study.optimize(objective, n_trials=n_trials, callbacks=[stopper])
    return study, stopper


def test_terminator_stops_a_study_that_cannot_improve():
    # the objective hardly depends on x: nothing left to gain beyond the margin
    def flat(trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        return 1.0 + 1e-4 * x

    study, stopper = _run_with_stopper(flat, {"margin": 0.01, "min_trials": 5})
    assert stopper.stopped and "regret bound" in stopper.reason
    assert len(study.trials) == 5


def test_terminator_lets_an_improvable_study_run():
    # a bowl that random points have only roughly located: still worth more trials
    def bowl(trial):
        x, y = trial.suggest_float("x", 0.0, 1.0), trial.suggest_float("y", 0.0, 1.0)
        return 10.0 * (x - 0.3) ** 2 + y

    study, stopper = _run_with_stopper(bowl, {"margin": 0.01, "min_trials": 5}, n_trials=10)
    assert not stopper.stopped and len(study.trials) == 10


def test_patience_counts_trials_since_the_best_improved_by_the_margin():
    values = [5.0, 4.0, 3.99, 3.995, 3.998, 4.5, 3.9999]
    trials = [
        optuna.trial.create_trial(
            value=v,
            params={"x": i / 10},
            distributions={"x": optuna.distributions.FloatDistribution(0, 1)},
        )
        for i, v in enumerate(values)
    ]
    # 4.0 was the last improvement by more than 0.05; five trials have finished since
    assert _trials_since_improvement(trials, True, 0.05) == 5
    assert _trials_since_improvement(trials[:2], True, 0.05) == 0
    assert _trials_since_improvement(trials, True, 0.001) == 4  # last gain >0.001: 3.99


def test_terminate_stops_a_real_study_early(tmp_path):
    space = write_space(
        tmp_path / "space.yaml",
        PARAMS,
        n_trials=6,
        terminate={"margin": 5.0, "min_trials": 2},  # 5 nats: nothing left to gain
    )
    result = cli("study", "create", "t", "--space", str(space))
    assert result.exit_code == 0, result.output
    trials = load("t").get_trials()
    done = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(done) == 2, [t.state for t in trials]
    assert "stopped early" in result.output
