"""What MLflow users see of a study: the experiment opens on its training runs with a view of the
trials, every run names the data it read as dataset inputs, and system metrics sit beside the
loss. One two-trial study is built for the module; the tests read it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import TINY_BASE
from tests.helpers import cli, project, write_space
from tuner import mlflow_ui, stores
from tuner.config import RunConfig, from_dict
from tuner.data import cache_key, load_token_data
from tuner.errors import ConfigError
from tuner.sysmetrics import interval_setting

PARAMS = {
    "learning_rate": {"low": 1e-3, "high": 1e-2, "log": True},
    "batch_size": {"choices": [4, 8]},
}


@dataclass
class Study:
    root: Path
    client: MlflowClient
    experiment_id: str

    def runs(self, kind: str) -> list:
        return self.client.search_runs(
            [self.experiment_id], f"tags.`tuner.kind` = '{kind}'", max_results=100
        )


@pytest.fixture(scope="module")
def study(tmp_path_factory, shared_cache):
    root = tmp_path_factory.mktemp("ux-study")
    with project(root, shared_cache) as mp:
        mp.setenv("TUNER_SYSTEM_METRICS", "0.5")
        base = {**TINY_BASE, "train": {**TINY_BASE["train"], "tokens": 4096, "threads": 1}}
        space = write_space(root / "space.yaml", PARAMS, n_trials=2, base=base)
        created = cli("study", "create", "ux", "--space", str(space))
        assert created.exit_code == 0, created.output
        client = MlflowClient(stores.default_tracking_uri())
        yield Study(root, client, client.get_experiment_by_name("ux").experiment_id)


def test_the_experiment_opens_on_its_training_runs(study):
    tags = study.client.get_experiment(study.experiment_id).tags
    assert tags[mlflow_ui.KIND_TAG] == "custom_model_development"
    assert tags[mlflow_ui.PRIMARY_METRIC_TAG] == "val_loss"
    view = json.loads(tags[mlflow_ui.VIEW_TAG_PREFIX + mlflow_ui.VIEW_ID])
    assert view["name"] == "tuner: trials by val_loss" and view["createdAt"] > 0
    state = json.loads(view["state"])
    assert state["orderByKey"] == "metrics.`val_loss`" and state["orderByAsc"] is True
    columns = state["selectedColumns"]
    assert columns[0] == "metrics.`val_loss`"
    assert {"params.`learning_rate`", "params.`batch_size`"} <= set(columns)
    # the view's filter, run through MLflow's own search, lists exactly the trials, flat
    listed = study.client.search_runs([study.experiment_id], state["searchFilter"])
    assert sorted(r.info.run_name for r in listed) == ["trial-0", "trial-1"]
    url = mlflow_ui.experiment_url("http://127.0.0.1:5000", study.experiment_id)
    assert url == (
        f"http://127.0.0.1:5000/#/experiments/{study.experiment_id}/runs"
        "?workflowType=machine_learning&viewStateShareKey=tuner-runs"
    )


def test_trial_runs_carry_their_data_as_dataset_inputs(study):
    config = from_dict(RunConfig, TINY_BASE)
    data = load_token_data(config.data, config.tokenizer)
    key = cache_key(config.data, config.tokenizer)
    assert data.root.name == key
    trials = study.runs("trial")
    assert len(trials) == 2
    for run in trials:
        inputs = {
            tag.value: entry.dataset
            for entry in run.inputs.dataset_inputs
            for tag in entry.tags
            if tag.key == "mlflow.data.context"
        }
        assert set(inputs) == {"training", "validation"}
        for context, split in (("training", "train"), ("validation", "val")):
            tokens = data.split(split)
            dataset = inputs[context]
            assert dataset.digest == key and dataset.name == f"shakespeare:{split}"
            source = json.loads(dataset.source)
            assert source["corpus"] == "shakespeare" and source["split"] == split
            assert json.loads(dataset.profile)["tokens"] == len(tokens)
    (parent,) = study.runs("study")
    assert not parent.inputs.dataset_inputs


def test_trial_runs_log_system_metrics(study):
    for run in study.runs("trial"):
        cpu = study.client.get_metric_history(run.info.run_id, "system/cpu_utilization_percentage")
        assert cpu and [m.step for m in cpu] == list(range(len(cpu)))
        assert all(0 <= m.value <= 100 for m in cpu)
        memory = run.data.metrics["system/system_memory_usage_megabytes"]
        assert memory > 0
        assert run.info.status == "FINISHED"


def test_system_metrics_setting(monkeypatch):
    monkeypatch.setenv("TUNER_SYSTEM_METRICS", "0")
    assert interval_setting() == 0
    monkeypatch.delenv("TUNER_SYSTEM_METRICS")
    assert interval_setting() == 10.0
    monkeypatch.setenv("TUNER_SYSTEM_METRICS", "often")
    with pytest.raises(ConfigError, match="TUNER_SYSTEM_METRICS='often'"):
        interval_setting()


def test_ui_tags_experiments_written_before_tuner_did(tmp_path):
    from tuner.tracking import Tracker
    from tuner.ui_server import tuner_experiments

    uri = stores.default_tracking_uri()
    client = Tracker(uri).client
    old = client.create_experiment("old-study", tags={"tuner.study": "old-study"})
    client.create_experiment("not-tuner")
    assert tuner_experiments(uri) == [("old-study", old)]
    tags = MlflowClient(uri).get_experiment(old).tags
    assert tags[mlflow_ui.KIND_TAG] == "custom_model_development"
    assert mlflow_ui.VIEW_TAG_PREFIX + mlflow_ui.VIEW_ID in tags


def test_a_worker_that_loses_the_dataset_race_tries_again(study, monkeypatch):
    """Two workers' first trials insert the same dataset at once; MLflow's loser gets an
    error, and its next try finds the dataset (no trial fails for it)."""
    from mlflow.exceptions import MlflowException

    from tuner.tracking import Tracker

    tracker = Tracker(study.client.tracking_uri)
    run = tracker.client.create_run(study.experiment_id)
    config = from_dict(RunConfig, TINY_BASE)
    data = load_token_data(config.data, config.tokenizer)
    real, calls = tracker.client.log_inputs, []

    def lose_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise MlflowException("UNIQUE constraint failed: datasets.experiment_id, name")
        return real(*args, **kwargs)

    monkeypatch.setattr(tracker.client, "log_inputs", lose_once)
    tracker.log_data(run.info.run_id, data, config, ("train",))
    assert len(calls) == 2
    inputs = tracker.client.get_run(run.info.run_id).inputs.dataset_inputs
    assert [entry.dataset.name for entry in inputs] == ["shakespeare:train"]
