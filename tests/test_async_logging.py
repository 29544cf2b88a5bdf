"""Over HTTP, milestone batches go out without waiting for the tracking server, and every one of
them has arrived when the run ends; a SQLite store stays synchronous."""

from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient

from tests.helpers import cli, write_space
from tuner import stores
from tuner.mlflow_ui import experiment_url
from tuner.tracking import Tracker


@pytest.fixture
def batch_calls(monkeypatch):
    """Every MlflowClient.log_batch call's `synchronous` argument."""
    calls: list[bool | None] = []
    real = mlflow.MlflowClient.log_batch

    def spy(self, run_id, *args, synchronous=None, **kwargs):
        calls.append(synchronous)
        return real(self, run_id, *args, synchronous=synchronous, **kwargs)

    monkeypatch.setattr(mlflow.MlflowClient, "log_batch", spy)
    return calls


def test_milestones_go_out_asynchronously_and_all_arrive(
    tmp_path, mlflow_server, batch_calls, monkeypatch
):
    monkeypatch.delenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", raising=False)
    space = write_space(tmp_path / "space.yaml", n_trials=2)
    result = cli("study", "create", "a", "--space", str(space), "--tracking-uri", mlflow_server)
    assert result.exit_code == 0, result.output
    assert False in batch_calls  # milestone batches did not wait for the server
    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("a")
    # MLflow's "View run ... at" lines stay out; the experiment's URL is said once, at the end
    assert "View run" not in result.output and "View experiment" not in result.output
    browse = f"browse: {experiment_url(mlflow_server, exp.experiment_id)}\n"
    assert browse in result.output, result.output
    trials = client.search_runs([exp.experiment_id], "tags.`tuner.kind` = 'trial'")
    assert len(trials) == 2
    for run in trials:
        assert run.info.status == "FINISHED"
        for key in ("val_loss", "val_perplexity", "train_loss", "tokens_per_second"):
            history = client.get_metric_history(run.info.run_id, key)
            assert [m.step for m in history] == [4096, 8192], key  # both milestones arrived
    assert not (stores.home() / "mlflow.db").exists()


def test_a_sqlite_store_stays_synchronous():
    assert Tracker(stores.default_tracking_uri()).asynchronous is False
    assert Tracker("http://127.0.0.1:1").asynchronous is True
