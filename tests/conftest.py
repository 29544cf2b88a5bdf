"""Every test gets its own stores under tmp_path; the token cache is shared by the session so
the tiny corpus is tokenized once."""

from __future__ import annotations

import pytest
import torch

from tuner.config import RunConfig, from_dict

# Tiny models gain nothing from a second thread, and one thread keeps the suite steady when the
# machine is busy (spinning OpenMP threads collapse under oversubscription).
torch.set_num_threads(1)

# A small slice of the built-in corpus: real Shakespeare, tokenized in about a second.
TINY_BASE = {
    "data": {"source": "shakespeare", "max_chars": 300_000, "val_fraction": 0.1, "test_fraction": 0.1},
    "tokenizer": {"kind": "bpe", "vocab_size": 512},
    "model": {"arch": "gpt2", "size": "nano"},
    "train": {"batch_size": 8, "seq_len": 32, "tokens": 8192, "milestones": 2, "eval_tokens": 1024,
              "eval_batch_size": 32},
}


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("token-cache")


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
