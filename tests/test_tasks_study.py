"""A study tuned on a downstream task metric, end to end: the metric is the objective, reaches
MLflow, the trial record and the export, and `tuner train` reports it on the test split."""

from __future__ import annotations

from pathlib import Path

import yaml
from mlflow import MlflowClient

from tests.conftest import TINY_BASE
from tests.helpers import cli, write_space
from tuner import stores
from tuner.dashboards import gather
from tuner.study import load_study

LINES = {"name": "lines", "kind": "continuation", "max_examples": 8, "max_new_tokens": 6}
BASE = {
    **TINY_BASE,
    "train": {**TINY_BASE["train"], "tokens": 4096},
    "eval": {"tasks": [LINES]},
}


def test_a_study_tuned_on_a_task_metric(isolated_stores: Path):
    space = write_space(
        isolated_stores / "space.yaml",
        {"learning_rate": {"low": 1e-3, "high": 1e-2, "log": True}},
        base=BASE,
        n_trials=2,
        objective={"metric": "task.lines.chrf", "direction": "maximize"},
    )
    result = cli("study", "create", "lines", "--space", str(space))
    assert result.exit_code == 0, result.output
    handle = load_study("lines")
    trials = handle.study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    for t in trials:  # the objective is the task metric the trial recorded
        assert t.value == t.user_attrs["metrics"]["task.lines.chrf"]
        assert 0.0 <= t.value <= 100.0
        assert t.user_attrs["cost"]["task_seconds"] > 0
    client = MlflowClient(stores.default_tracking_uri())
    run = client.get_run(trials[0].user_attrs["mlflow_run_id"])
    assert run.data.metrics["task.lines.chrf"] == trials[0].value
    assert "task.lines.token_accuracy" in run.data.metrics
    data = gather(handle)  # the dashboard plots each task score against perplexity
    assert "task.lines.chrf" in data.task_metrics and "task.lines.seconds" not in data.task_metrics
    page = Path("dashboards/lines.html").read_text()
    assert 'id="fig-tasks"' in page and "lines chrf" in page

    result = cli("study", "show", "lines", "--format", "csv")  # every task score, raw
    assert result.exit_code == 0, result.output
    header, *rows = result.output.strip().splitlines()
    column = header.split(",").index("task.lines.token_accuracy")
    recorded = trials[0].user_attrs["metrics"]["task.lines.token_accuracy"]
    assert float(rows[0].split(",")[column]) == recorded
    result = cli("study", "show", "lines", "--columns", "trial,task.lines.bleu")
    assert result.exit_code == 0 and "lines bleu" in result.output, result.output

    result = cli("export", "lines", "-o", "best.yaml")
    assert result.exit_code == 0, result.output
    prov = yaml.safe_load(Path("best.yaml").read_text())["provenance"]
    best = handle.study.best_trial
    assert prov["metric"] == "task.lines.chrf" and prov["direction"] == "maximize"
    assert prov["trial"] == best.number and prov["value"] == best.value

    result = cli("train", "best.yaml", "--out", "final")
    assert result.exit_code == 0, result.output
    assert "test split tasks: lines.bleu " in result.output, result.output
    metrics = yaml.safe_load(Path("final/metrics.json").read_text())["test"]
    assert 0.0 <= metrics["task.lines.chrf"] <= 100.0


def test_an_objective_no_task_produces_is_one_line(isolated_stores: Path):
    space = write_space(
        isolated_stores / "space.yaml",
        base=BASE,
        objective={"metric": "task.genre.f1", "direction": "maximize"},
    )
    result = cli("study", "create", "nope", "--space", str(space))
    assert result.exit_code == 2
    assert "objective.metric: unknown metric 'task.genre.f1'" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (isolated_stores / "mlruns").exists()
