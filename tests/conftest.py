"""Every test gets its own stores under tmp_path; the token cache is shared by the session so
the tiny corpus is tokenized once."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tuner.config import RunConfig, from_dict

# Tiny models gain nothing from a second thread, and one thread keeps the suite steady when the
# machine is busy (spinning OpenMP threads collapse under oversubscription).
torch.set_num_threads(1)
os.environ.setdefault("COLUMNS", "200")  # rich tables in CLI output are not cut at 80 columns

# A small slice of the built-in corpus: real Shakespeare, tokenized in about a second.
TINY_BASE = {
    "data": {
        "source": "shakespeare",
        "max_chars": 300_000,
        "val_fraction": 0.1,
        "test_fraction": 0.1,
    },
    "tokenizer": {"kind": "bpe", "vocab_size": 512},
    "model": {"arch": "gpt2", "size": "nano"},
    "train": {
        "batch_size": 8,
        "seq_len": 32,
        "tokens": 8192,
        "milestones": 2,
        "eval_tokens": 1024,
        "eval_batch_size": 32,
    },
}


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("token-cache")


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory):
    """An initialised, empty MLflow SQLite store: creating one runs every migration (seconds)."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture(autouse=True)
def fast_tracking_store(mlflow_template, monkeypatch):
    """A new local tracking store starts as a copy of the template instead of migrating."""
    from tuner import tracking

    original = tracking.Tracker.__init__

    def init(self, tracking_uri: str) -> None:
        if tracking_uri.startswith("sqlite:///"):
            target = Path(tracking_uri[len("sqlite:///") :])
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(mlflow_template, target)
        original(self, tracking_uri)

    monkeypatch.setattr(tracking.Tracker, "__init__", init)


@pytest.fixture(autouse=True)
def isolated_stores(tmp_path, shared_cache, monkeypatch):
    """Point every store at tmp_path so no test touches ./mlruns or the user's MLflow."""
    monkeypatch.setenv("TUNER_HOME", str(tmp_path / "mlruns"))
    monkeypatch.setenv("TUNER_CACHE_DIR", str(shared_cache))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def tiny_config() -> RunConfig:
    return from_dict(RunConfig, TINY_BASE)


@pytest.fixture
def tiny_data():
    from tuner.data import load_token_data

    cfg = from_dict(RunConfig, TINY_BASE)
    return load_token_data(cfg.data, cfg.tokenizer)


def free_port() -> int:
    """A TCP port on the loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mlflow_server_command(port: int, root: Path, template: Path) -> list[str]:
    """`mlflow server` on the loopback, one worker, its SQLite store and artifacts in `root`;
    the store starts as a copy of the migrated `template` (migrating is most of a start)."""
    shutil.copyfile(template, root / "mlflow.db")
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
    ]


def mlflow_healthy(url: str, proc: subprocess.Popen, output: Callable[[], str]) -> bool:
    """Whether the `mlflow server` process `proc` answers at `url`; fails with its output
    if it exited."""
    if proc.poll() is not None:
        raise AssertionError("mlflow server exited:\n" + output()[-3000:])
    with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
        return answer.status == 200
    return False


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory, mlflow_template):
    """One `mlflow server` for the session's HTTP tracking tests (each uses its own
    experiment)."""
    tmp_path = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(
        mlflow_server_command(port, tmp_path, mlflow_template),
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "MLFLOW_TRACKING_URI": ""},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        output = (tmp_path / "server.log").read_text
        deadline = time.monotonic() + 300  # a loaded 2-core machine
        while not mlflow_healthy(url, proc, output):
            if time.monotonic() > deadline:
                pytest.fail("mlflow server did not start: " + output()[-2000:])
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
