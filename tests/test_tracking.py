"""MLflow layout: a parent run per study, nested child runs per trial with live curves, statuses
that mirror the trials, nothing left RUNNING, and the UI's own REST data path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

import tuner.objective
from tests.conftest import free_port
from tests.helpers import cli, write_space
from tuner import stores

LR_GRID = {"learning_rate": {"low": 1e-3, "high": 100.0, "log": True, "grid": [3e-3, 50.0]}}


def client() -> MlflowClient:
    return MlflowClient(stores.default_tracking_uri())


def runs_of(c: MlflowClient, name: str) -> list:
    exp = c.get_experiment_by_name(name)
    return c.search_runs([exp.experiment_id])


def diverging_space(tmp_path):
    from tests.conftest import TINY_BASE

    base = {
        **TINY_BASE,
        "optim": {"grad_clip": 0.0},
        "schedule": {"warmup_fraction": 0.0},
        "train": {**TINY_BASE["train"], "milestones": 4},
    }
    return write_space(tmp_path / "space.yaml", LR_GRID, sampler="grid", base=base)


def test_parent_and_children_mirror_the_study(tmp_path):
    result = cli("study", "create", "t", "--space", str(diverging_space(tmp_path)))
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="t", storage=stores.default_storage())
    c = client()
    runs = runs_of(c, "t")
    parents = [r for r in runs if r.data.tags.get("tuner.kind") == "study"]
    children = [r for r in runs if r.data.tags.get("tuner.kind") == "trial"]
    assert len(parents) == 1 and len(children) == len(study.trials) == 2
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.params["sampler"] == "grid" and parent.data.params["seed"] == "0"
    by_id = {r.info.run_id: r for r in children}
    for trial in study.trials:
        run = by_id[trial.user_attrs["mlflow_run_id"]]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["optuna.trial_number"] == str(trial.number)
        assert run.data.tags["optuna.study"] == "t"
        assert run.data.params["learning_rate"] == str(trial.params["learning_rate"])
        assert run.data.params["optim.lr"] == str(trial.params["learning_rate"])
        assert run.data.params["model.arch"] == "gpt2"
        history = c.get_metric_history(run.info.run_id, "val_loss")
        assert [m.step for m in history] == sorted(m.step for m in history)
        if trial.state == optuna.trial.TrialState.COMPLETE:
            assert run.info.status == "FINISHED" and run.data.tags["tuner.state"] == "COMPLETE"
            assert len(history) == 4  # one point per milestone, step = tokens seen
            assert [m.step for m in history] == [2048, 4096, 6144, 8192]
            for key in (
                "val_perplexity",
                "val_bpb",
                "val_accuracy",
                "train_loss",
                "learning_rate",
                "tokens_per_second",
            ):
                assert len(c.get_metric_history(run.info.run_id, key)) == 4
            for key in (
                "n_params",
                "train_flops",
                "wall_seconds",
                "price_usd",
                "peak_memory_bytes",
            ):
                assert run.data.metrics[key] > 0
            assert history[-1].value == pytest.approx(trial.value)
        else:
            assert trial.state == optuna.trial.TrialState.PRUNED
            assert run.info.status == "KILLED"
            assert run.data.tags["tuner.reason"].startswith("diverged")
        config_yaml = c.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path))
        assert "lr: " + str(trial.params["learning_rate"]) in Path(config_yaml).read_text()
    best = study.best_trial
    assert parent.data.metrics["best_value"] == pytest.approx(best.value)
    assert parent.data.tags["best_trial"] == str(best.number)


def test_an_exception_mid_trial_fails_the_trial_and_its_run(tmp_path, monkeypatch):
    real = tuner.objective.train_run

    def crash_after_first_milestone(config, data, on_milestone=None, **kwargs):
        def boom(milestone):
            on_milestone(milestone)
            raise RuntimeError("disk on fire")

        return real(config, data, on_milestone=boom, **kwargs)

    monkeypatch.setattr(tuner.objective, "train_run", crash_after_first_milestone)
    space = write_space(tmp_path / "space.yaml", n_trials=2)
    result = cli("study", "create", "x", "--space", str(space))
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="x", storage=stores.default_storage())
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL] * 2
    c = client()
    children = [r for r in runs_of(c, "x") if r.data.tags.get("tuner.kind") == "trial"]
    assert len(children) == 2
    for run in children:
        assert run.info.status == "FAILED"
        assert "disk on fire" in run.data.tags["tuner.reason"]
        assert len(c.get_metric_history(run.info.run_id, "val_loss")) == 1
        path = c.download_artifacts(run.info.run_id, "traceback.txt", str(tmp_path))
        assert "RuntimeError: disk on fire" in Path(path).read_text()


def test_ctrl_c_leaves_no_run_running_and_the_study_resumable(tmp_path, monkeypatch):
    real = tuner.objective.train_run
    calls = {"n": 0}

    def interrupt_second_trial(config, data, on_milestone=None, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(config, data, on_milestone=on_milestone, **kwargs)

    monkeypatch.setattr(tuner.objective, "train_run", interrupt_second_trial)
    space = write_space(tmp_path / "space.yaml", n_trials=3)
    result = cli("study", "create", "k", "--space", str(space))
    assert result.exit_code == 130 and "tuner study resume k" in result.output
    runs = runs_of(client(), "k")
    assert runs and all(r.info.status != "RUNNING" for r in runs)
    monkeypatch.setattr(tuner.objective, "train_run", real)
    assert cli("study", "resume", "k").exit_code == 0
    study = optuna.load_study(study_name="k", storage=stores.default_storage())
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) == 3
    assert all(r.info.status != "RUNNING" for r in runs_of(client(), "k"))


def _post(url: str, payload: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def test_a_real_tracking_server_serves_the_runs_over_rest(tmp_path, mlflow_server):
    space = write_space(tmp_path / "space.yaml", n_trials=2)
    result = cli("study", "create", "srv", "--space", str(space), "--tracking-uri", mlflow_server)
    assert result.exit_code == 0, result.output
    api = mlflow_server + "/api/2.0/mlflow"
    exp = json.load(urllib.request.urlopen(api + "/experiments/get-by-name?experiment_name=srv"))
    found = _post(
        api + "/runs/search",
        {"experiment_ids": [exp["experiment"]["experiment_id"]], "max_results": 100},
    )
    runs = found["runs"]
    trials = [r for r in runs if {"key": "tuner.kind", "value": "trial"} in r["data"]["tags"]]
    assert len(runs) == 3 and len(trials) == 2
    for run in trials:
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        assert 0 < metrics["val_loss"] < 7 and metrics["n_params"] > 0
        assert run["info"]["status"] == "FINISHED"
    assert not (stores.home() / "mlflow.db").exists()  # nothing went to the local store


def test_tuner_ui_serves_the_store_on_loopback(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuner", "ui", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 300  # a loaded 2-core machine
        while time.time() < deadline:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode()
                time.sleep(0.5)
        else:
            pytest.fail("tuner ui did not start")
        assert body.strip() == b"OK"
        assert (stores.home() / "mlflow.db").exists()
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
