"""`tuner study` and `tuner space` through the CLI: every sampler drives a real micro study,
grids are covered exactly once, resume neither repeats nor loses trials, bad input is one line."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import optuna
import pytest

from tests.helpers import cli, write_space
from tuner import stores

SPACES = sorted(Path(__file__).parent.parent.joinpath("search_spaces").glob("*.yaml"))


def storage_studies() -> list[str]:
    db = stores.home() / "optuna.db"
    if not db.exists():
        return []
    return [s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{db}")]


def load(name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=stores.default_storage())


@pytest.mark.parametrize("path", SPACES, ids=[p.stem for p in SPACES])
def test_every_shipped_space_is_valid(path):
    result = cli("space", "validate", str(path))
    assert result.exit_code == 0, result.output
    shown = cli("space", "show", str(path))
    assert shown.exit_code == 0 and "learning_rate" in shown.output


def test_shipped_spaces_cover_the_five_hyperparameters():
    from tuner.space import load_space

    quick = load_space(SPACES[[p.stem for p in SPACES].index("quick")])
    assert {p.path for p in quick.params} >= {
        "optim.lr",
        "train.batch_size",
        "train.seq_len",
        "model.dropout",
        "model.size",
    }
    assert quick.n_trials >= 6
    grid = load_space(SPACES[[p.stem for p in SPACES].index("grid")])
    assert grid.sampler == "grid" and grid.n_trials == grid.grid_size() == 24


@pytest.mark.parametrize(
    "sampler, extra",
    [
        ("random", {}),
        ("tpe", {}),
        ("cmaes", {}),
        ("qmc", {}),
        ("nsga2", {"objective": [{"metric": "val_loss"}, {"metric": "n_params"}]}),
    ],
)
def test_each_sampler_runs_a_real_micro_study(tmp_path, sampler, extra):
    params = {
        "learning_rate": {"low": 1e-3, "high": 1e-2, "log": True},
        "dropout": {"low": 0.0, "high": 0.2},
        "model_size": {"choices": ["nano", "micro"]},
    }
    space = write_space(tmp_path / "space.yaml", params, sampler=sampler, **extra)
    result = cli("study", "create", "s", "--space", str(space), "--n-trials", "3")
    assert result.exit_code == 0, result.output
    study = load("s")
    trials = study.get_trials()
    assert len(trials) == 3
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    for t in trials:
        assert 1e-3 <= t.params["learning_rate"] <= 1e-2 and 0 <= t.params["dropout"] <= 0.2
        assert t.params["model_size"] in ("nano", "micro")
        assert (
            0 < t.values[0] < 7
            and t.user_attrs["config"]["optim"]["lr"] == t.params["learning_rate"]
        )
    if sampler == "nsga2":
        assert len(study.directions) == 2 and study.best_trials
    else:
        assert 0 < study.best_value < 7


def test_grid_covers_every_point_exactly_once(tmp_path):
    params = {
        "learning_rate": {"low": 1e-3, "high": 1e-2, "grid": [1e-3, 3e-3, 1e-2]},
        "batch_size": {"choices": [4, 8]},
    }
    space = write_space(tmp_path / "space.yaml", params, sampler="grid", n_trials=2)
    result = cli("study", "create", "g", "--space", str(space))
    assert result.exit_code == 0, result.output
    seen = [(t.params["learning_rate"], t.params["batch_size"]) for t in load("g").get_trials()]
    assert sorted(seen) == sorted(itertools.product([1e-3, 3e-3, 1e-2], [4, 8]))


def test_a_one_point_grid_runs_its_point(tmp_path):
    params = {"learning_rate": {"low": 1e-3, "high": 1e-2, "grid": [3e-3]}}
    space = write_space(tmp_path / "space.yaml", params, sampler="grid", n_trials=1)
    result = cli("study", "create", "one", "--space", str(space))
    assert result.exit_code == 0, result.output
    trials = load("one").get_trials()
    assert [(t.state.name, t.params) for t in trials] == [("COMPLETE", {"learning_rate": 3e-3})]


def test_resume_continues_without_repeating_or_losing_trials(tmp_path):
    space = write_space(tmp_path / "space.yaml", n_trials=4)
    assert cli("study", "create", "r", "--space", str(space), "--n-trials", "2").exit_code == 0
    first = {t.number: t.params for t in load("r").get_trials()}
    assert len(first) == 2
    result = cli("study", "resume", "r", "--n-trials", "4")
    assert result.exit_code == 0, result.output
    trials = load("r").get_trials()
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert {t.number: t.params for t in trials[:2]} == first
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    # a resumed sampler is reseeded, so it does not replay the first trials' params
    assert trials[2].params != trials[0].params
    shown = cli("study", "show", "r")
    assert shown.exit_code == 0 and shown.output.count("COMPLETE") == 4 and "*" in shown.output
    listed = cli("study", "list")
    assert re.search(r"^r +4/\d+ +4 ", listed.output, re.MULTILINE), listed.output  # piped
    assert cli("study", "delete", "r").exit_code == 0
    assert storage_studies() == []


def _bad(tmp_path, text: str) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return str(path)


GOOD_HEAD = "name: b\nsampler: random\nbase: {train: {tokens: 8192}}\n"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--space", "missing.yaml"], "missing.yaml: file not found"),
        (["--space", "@name: [unclosed\n"], "invalid YAML"),
        (["--space", "@" + GOOD_HEAD + "colour: red\n"], "colour: unknown key"),
        (
            ["--space", "@" + GOOD_HEAD + "params: {model.wings: {low: 1, high: 2}}\n"],
            "params.model.wings: unknown param",
        ),
        (
            ["--space", "@" + GOOD_HEAD + "params: {learning_rate: {low: 0.1, high: 0.01}}\n"],
            "params.learning_rate: low (0.1) > high (0.01)",
        ),
        (
            [
                "--space",
                "@" + GOOD_HEAD + "params: {learning_rate: {low: 0, high: 0.01, log: true}}\n",
            ],
            "params.learning_rate.log: needs low > 0",
        ),
        (
            [
                "--space",
                "@"
                + GOOD_HEAD.replace("random", "grid")
                + "params: {dropout: {low: 0, high: 0.2}}\n",
            ],
            "params.dropout: grid search needs explicit `grid` values",
        ),
        (
            ["--space", "@" + GOOD_HEAD + "params: {batch_size: {choices: []}}\n"],
            "params.batch_size.choices: must be a non-empty list",
        ),
        (
            ["--space", "@" + GOOD_HEAD + "params: {batch_size: {choices: [8, 0]}}\n"],
            "params.batch_size: value 0 is invalid",
        ),
        (
            ["--space", "@" + GOOD_HEAD, "--set", "train.wings=2"],
            "--set train.wings=2: train.wings: unknown config key",
        ),
        (
            ["--space", "@" + GOOD_HEAD, "--set", "train.tokens=many"],
            "train.tokens: expected an integer",
        ),
        (
            ["--space", "@" + GOOD_HEAD, "--storage", "nosuchdb://x/y"],
            "--storage nosuchdb://x/y: cannot open storage",
        ),
        (["--space", "@" + GOOD_HEAD, "--tracking-uri", "ftp://x"], "--tracking-uri 'ftp://x'"),
        (["--space", "@" + GOOD_HEAD, "--sampler", "magic"], "sampler: unknown sampler 'magic'"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, args, message):
    args = [_bad(tmp_path, a[1:]) if a.startswith("@") else a for a in args]
    result = cli("study", "create", "b", *args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output
    assert storage_studies() == []
    assert not (stores.home() / "mlflow.db").exists()


@pytest.mark.parametrize("name", ["../escape", "a/b", "bad name", "", ".hidden"])
def test_unsafe_study_names_are_rejected(tmp_path, name):
    space = write_space(tmp_path / "space.yaml")
    result = cli("study", "create", name, "--space", str(space))
    assert result.exit_code == 2 and "study name" in result.output
    assert not stores.home().exists()


@pytest.mark.parametrize("command", ["resume", "show", "delete"])
def test_unknown_study_is_one_line(command):
    result = cli("study", command, "ghost")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "ghost" in result.output or "no studies" in result.output
    assert not stores.home().exists()


def test_existing_study_name_is_refused(tmp_path):
    space = write_space(tmp_path / "space.yaml", n_trials=1)
    assert cli("study", "create", "dup", "--space", str(space), "--no-run").exit_code == 0
    result = cli("study", "create", "dup", "--space", str(space))
    assert result.exit_code == 2 and "already exists" in result.output
    assert not load("dup").get_trials(states=(optuna.trial.TrialState.COMPLETE,))


def test_python_m_tuner_is_the_cli():
    """Local workers are started as `python -m tuner`; no module imports the CLI for that."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "tuner", "space", "validate", "nowhere.yaml"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "error: nowhere.yaml: file not found"
