"""The Model Registry holds real MLflow models: `models:/NAME/1` loads through the transformers
flavour (gpt2) or the pytorch flavour (lstm), and through pyfunc, offline; the final run names
the data it trained, validated and tested on."""

from __future__ import annotations

import json
import math
import socket

import numpy as np
import pytest
import torch
import yaml

from tests.conftest import TINY_BASE
from tests.helpers import cli
from tuner import mlflow_ui, stores
from tuner.models import logits
from tuner.saved import load_saved

FAST = {"tokens": 4096, "threads": 1}


@pytest.fixture
def offline_registry(monkeypatch):
    """The process-wide tracking URI that `models:/` URIs resolve through; any attempt to
    reach another machine (the Hugging Face hub, ...) fails the test."""
    import mlflow

    remote: list[str] = []
    real = socket.getaddrinfo

    def local_only(host, *args, **kwargs):
        if host not in ("localhost", "127.0.0.1", "::1", None):
            remote.append(str(host))
            raise OSError(f"offline test: no lookups of {host}")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", local_only)
    monkeypatch.setenv("TUNER_SYSTEM_METRICS", "0")
    uri = stores.default_tracking_uri()
    previous = mlflow.get_tracking_uri()
    yield uri
    mlflow.set_tracking_uri(previous)
    assert not remote, f"tried to reach {remote}"


def train(tmp_path, name: str, arch: str) -> str:
    raw = {**TINY_BASE, "model": {"arch": arch, "size": "nano"}}
    raw["train"] = {**TINY_BASE["train"], **FAST}
    config = tmp_path / f"{name}.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    result = cli("train", str(config), "--out", name)
    assert result.exit_code == 0, result.output
    return f"{name}-{arch}"


def test_a_gpt2_loads_from_the_registry_through_the_transformers_flavour(
    tmp_path, offline_registry
):
    import mlflow
    import mlflow.pyfunc
    import mlflow.transformers

    registered = train(tmp_path, "hf", "gpt2")
    mlflow.set_tracking_uri(offline_registry)
    generator = mlflow.transformers.load_model(f"models:/{registered}/1")
    assert generator.task == "text-generation"
    saved = load_saved(tmp_path / "hf")
    ids = torch.randint(0, saved.model.config.vocab_size, (1, 32))
    with torch.no_grad():  # the registered weights are the saved (trained) ones
        assert torch.allclose(generator.model(input_ids=ids).logits, logits(saved.model, ids))
    out = generator("ROMEO:", max_new_tokens=8, do_sample=False)[0]["generated_text"]
    assert out.startswith("ROMEO:")
    model = mlflow.pyfunc.load_model(f"models:/{registered}/1")
    texts = model.predict(["ROMEO:", "KING:"], params={"max_new_tokens": 5, "do_sample": False})
    assert len(texts) == 2 and all(isinstance(t, str) and t for t in texts)

    client = mlflow.MlflowClient(offline_registry)
    (version,) = client.search_model_versions(f"name='{registered}'")
    run = client.get_run(version.run_id)
    contexts = {
        tag.value: entry.dataset.digest
        for entry in run.inputs.dataset_inputs
        for tag in entry.tags
        if tag.key == "mlflow.data.context"
    }
    assert set(contexts) == {"training", "validation", "test"}
    assert len(set(contexts.values())) == 1  # one token cache, three splits of it
    tags = client.get_experiment(run.info.experiment_id).tags
    assert tags[mlflow_ui.KIND_TAG] == "custom_model_development"
    state = json.loads(json.loads(tags[mlflow_ui.VIEW_TAG_PREFIX + mlflow_ui.VIEW_ID])["state"])
    assert state["orderByKey"] == "metrics.`test_loss`"


def test_an_lstm_loads_from_the_registry_through_the_pytorch_flavour(tmp_path, offline_registry):
    import mlflow
    import mlflow.pyfunc
    import mlflow.pytorch

    registered = train(tmp_path, "rnn", "lstm")
    mlflow.set_tracking_uri(offline_registry)
    model = mlflow.pytorch.load_model(f"models:/{registered}/1")
    saved = load_saved(tmp_path / "rnn").model
    ids = torch.randint(0, saved.embed.num_embeddings, (2, 16))
    with torch.no_grad():
        assert torch.allclose(model(ids), saved(ids))
    scores = mlflow.pyfunc.load_model(f"models:/{registered}/1").predict(ids.numpy())
    assert np.asarray(scores).shape == (2, 16, saved.embed.num_embeddings)
    recorded = json.loads((tmp_path / "rnn" / "metrics.json").read_text())["test"]["test_loss"]
    assert math.isfinite(recorded)
