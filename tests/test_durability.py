"""The SQLite stores run in WAL mode with synchronous=NORMAL: a study killed with SIGKILL
keeps every trial it had finished, in Optuna and in MLflow, and resumes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna

from tests.helpers import cli, write_space
from tuner import stores

ROOT = Path(__file__).resolve().parent.parent


def _complete_trials(db: Path) -> list[int]:
    if not db.exists():
        return []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        try:
            rows = conn.execute("SELECT number FROM trials WHERE state = 'COMPLETE'").fetchall()
        except sqlite3.OperationalError:  # tables not created yet
            return []
    return sorted(r[0] for r in rows)


def test_finished_trials_survive_sigkill_and_the_study_resumes(tmp_path, monkeypatch):
    space = write_space(tmp_path / "space.yaml", n_trials=30)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuner", "study", "create", "k", "--space", str(space)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db = stores.home() / "optuna.db"
    deadline = time.monotonic() + 900
    try:
        while len(_complete_trials(db)) < 2 and time.monotonic() < deadline:
            assert proc.poll() is None, "the study ended before it could be killed"
            time.sleep(0.2)
        seen = _complete_trials(db)
        assert len(seen) >= 2, "no trial finished in time"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    study = optuna.load_study(study_name="k", storage=stores.default_storage())
    by_number = {t.number: t for t in study.get_trials()}
    for number in seen:  # everything seen committed is still there, with its results
        trial = by_number[number]
        assert trial.state == optuna.trial.TrialState.COMPLETE and 0 < trial.value < 10
        run = _mlflow_run(trial.user_attrs["mlflow_run_id"])
        assert run.info.status == "FINISHED" and "val_loss" in run.data.metrics

    # the killed trial is failed after the grace period and the study goes on
    monkeypatch.setenv("TUNER_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("TUNER_GRACE_PERIOD", "2")
    time.sleep(2.5)
    result = cli("study", "resume", "k", "--n-trials", str(len(seen) + 1))
    assert result.exit_code == 0, result.output
    after = optuna.load_study(study_name="k", storage=stores.default_storage()).get_trials()
    assert len([t for t in after if t.state == optuna.trial.TrialState.COMPLETE]) > len(seen)


def _mlflow_run(run_id: str):
    from mlflow import MlflowClient

    return MlflowClient(stores.default_tracking_uri()).get_run(run_id)
