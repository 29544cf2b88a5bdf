"""export -> train -> load with transformers -> generate, on nano models of a micro study.

A two-trial study (1- and 2-layer nano GPT-2) and the final model trained from its exported
config are built once for the module; the tests then read them. Budgets stay at a few
thousand tokens so the file runs in well under two minutes on a laptop CPU.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import yaml

from tests.conftest import TINY_BASE
from tests.helpers import cli, project, write_space
from tuner import stores
from tuner.config import ConfigError, RunConfig, from_dict, load_run_config
from tuner.data import load_token_data
from tuner.evaluate import evaluate
from tuner.export import redact_url
from tuner.saved import load_saved
from tuner.tracking import FinalRun
from tuner.units import parse_amount

TRIAL_TOKENS = 4096
# one torch thread: on a shared 2-core machine two threads can run 5-40x slower
FAST = {"tokens": TRIAL_TOKENS, "threads": 1}


@dataclass
class Micro:
    root: Path
    storage: str
    tracking: str
    best: Path
    final: Path

    def study(self) -> optuna.Study:
        return optuna.load_study(study_name="micro", storage=self.storage)

    def metrics(self) -> dict:
        return json.loads((self.final / "metrics.json").read_text())


@pytest.fixture(scope="module")
def micro(tmp_path_factory, shared_cache):
    """The study, its exported best config and the final model trained from it, built once."""
    root = tmp_path_factory.mktemp("micro-study")
    with project(root, shared_cache):
        base = {**TINY_BASE, "train": {**TINY_BASE["train"], **FAST}}
        space = write_space(
            root / "space.yaml", {"model.n_layer": {"choices": [1, 2]}}, sampler="grid", base=base
        )
        created = cli("study", "create", "micro", "--space", str(space))
        assert created.exit_code == 0, created.output
        assert cli("export", "micro", "-o", "best.yaml").exit_code == 0
        trained = cli("train", "best.yaml", "--out", "final")
        assert trained.exit_code == 0, trained.output
        yield Micro(
            root,
            f"sqlite:///{root}/mlruns/optuna.db",
            f"sqlite:///{root}/mlruns/mlflow.db",
            root / "best.yaml",
            root / "final",
        )


def one_line_error(result, message: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output, lines


def tiny_data(config: RunConfig):
    return load_token_data(config.data, config.tokenizer)


def val_loss_of(model: torch.nn.Module, config: RunConfig) -> float:
    """The loss the trainer reports at a milestone, recomputed for a (reloaded) model."""
    data = tiny_data(config)
    tc = config.train
    return evaluate(
        model,
        data.val,
        data.token_bytes,
        tc.seq_len,
        tc.eval_tokens,
        tc.eval_batch_size,
        torch.device("cpu"),
    )["val_loss"]


# ---------------------------------------------------------------- export


def test_export_writes_the_best_trial_with_provenance(micro, tmp_path):
    study = micro.study()
    best = study.best_trial
    result = cli("export", "micro", "-o", "out/best.yaml", "--storage", micro.storage)
    assert result.exit_code == 0, result.output
    path = tmp_path / "out" / "best.yaml"
    assert load_run_config(path) == from_dict(RunConfig, best.user_attrs["config"])
    prov = yaml.safe_load(path.read_text())["provenance"]
    assert prov["study"] == "micro" and prov["trial"] == best.number
    assert prov["storage"] == micro.storage and prov["metric"] == "val_loss"
    assert prov["value"] == best.value and prov["direction"] == "minimize"
    assert prov["mlflow_run_id"] == best.user_attrs["mlflow_run_id"] and prov["exported_at"]
    assert not list(path.parent.glob(".*.tmp"))


def test_export_constraints_pick_the_best_trial_that_fits(micro, tmp_path):
    trials = micro.study().get_trials()
    small, large = sorted(trials, key=lambda t: t.user_attrs["cost"]["n_params"])

    def exported(*args: str) -> int:
        result = cli("export", "micro", "-o", "pick.yaml", "--storage", micro.storage, *args)
        assert result.exit_code == 0, result.output
        return yaml.safe_load((tmp_path / "pick.yaml").read_text())["provenance"]["trial"]

    assert exported("--max-params", str(small.user_attrs["cost"]["n_params"])) == small.number
    assert exported("--max-params", "1M") == micro.study().best_trial.number  # both fit
    assert exported("--max-flops", str(small.user_attrs["cost"]["train_flops"])) == small.number
    assert exported("--metric", "n_params") == small.number
    assert exported("--trial", str(large.number)) == large.number
    by_accuracy = max(trials, key=lambda t: (t.user_attrs["metrics"]["val_accuracy"], -t.number))
    assert exported("--metric", "val_accuracy") == by_accuracy.number


@pytest.mark.parametrize(
    "args, message",
    [
        (["--trial", "99"], "--trial 99: study 'micro' has no such trial"),
        (["--max-params", "10"], "no complete trial meets the constraints (n_params <= 10)"),
        (["--max-flops", "-1"], "--max-flops '-1': expected a positive number"),
        (["--max-params", "lots"], "--max-params 'lots': expected a positive number"),
        (["--metric", "magic"], "--metric 'magic'"),
        (["-o", "taken"], "is a directory"),
        (["-o", "best.txt"], "expected a .yaml or .yml file name"),
    ],
)
def test_export_bad_input_is_one_line_and_writes_nothing(micro, tmp_path, args, message):
    (tmp_path / "taken").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    one_line_error(cli("export", "micro", "--storage", micro.storage, *args), message)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_export_needs_a_complete_trial(micro, tmp_path):
    space = write_space(tmp_path / "space.yaml")
    created = cli(
        "study",
        "create",
        "empty",
        "--space",
        str(space),
        "--no-run",
        "--storage",
        micro.storage,
        "--tracking-uri",
        micro.tracking,
    )
    assert created.exit_code == 0, created.output
    one_line_error(
        cli("export", "empty", "--storage", micro.storage),
        "study 'empty' has no complete trials yet",
    )
    one_line_error(cli("export", "ghost", "--storage", micro.storage), "no study named 'ghost'")
    assert not (tmp_path / "best.yaml").exists()


def test_redacted_storage_and_amounts():
    assert redact_url("postgresql://u:secret@db:5432/optuna") == "postgresql://u:***@db:5432/optuna"
    assert redact_url("sqlite:///x/optuna.db") == "sqlite:///x/optuna.db"
    assert parse_amount("200k", "--tokens") == 200_000 and parse_amount("1.5M", "-") == 1.5e6
    assert parse_amount("3e15", "--flops") == 3e15 and parse_amount(None, "-") is None
    with pytest.raises(ConfigError, match="--tokens 'lots'"):
        parse_amount("lots", "--tokens")


# ---------------------------------------------------------------- final model


def test_exported_config_reproduces_the_trial(micro):
    """Trained with the trial's own budget and seed, the final model scores the trial's loss."""
    prov = yaml.safe_load(micro.best.read_text())["provenance"]
    trial = micro.study().trials[prov["trial"]]
    final_val = micro.metrics()["val"]["val_loss"]
    assert math.isclose(final_val, trial.user_attrs["metrics"]["val_loss"], rel_tol=1e-4)
    assert load_run_config(micro.final / "run_config.yaml") == load_run_config(micro.best)


def test_final_model_loads_in_transformers_with_the_same_loss(micro):
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    files = {p.name for p in micro.final.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "run_config.yaml"} <= files
    assert not any(name.endswith(".bin") for name in files)
    config = load_run_config(micro.best)
    model = AutoModelForCausalLM.from_pretrained(micro.final)
    tokenizer = AutoTokenizer.from_pretrained(micro.final)
    trained_tokenizer = Tokenizer.from_file(str(tiny_data(config).tokenizer_path))
    text = "ROMEO: But soft, what light through yonder window breaks?"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids == trained_tokenizer.encode(text, add_special_tokens=False).ids
    assert tokenizer.decode(ids) == text and tokenizer.eos_token == "<|endoftext|>"
    recorded = micro.metrics()["val"]["val_loss"]  # the trained model's, at its last step
    assert math.isclose(val_loss_of(model, config), recorded, rel_tol=1e-5)
    assert math.isclose(val_loss_of(load_saved(micro.final).model, config), recorded, rel_tol=1e-5)
    batch = torch.tensor([ids])
    assert torch.isfinite(model(input_ids=batch, labels=batch).loss)
    generator = pipeline("text-generation", model=str(micro.final))
    out = generator("ROMEO:", max_new_tokens=12, do_sample=False)[0]["generated_text"]
    assert out.startswith("ROMEO:") and len(out) > len("ROMEO:")


def test_final_run_is_registered_with_its_test_metrics(micro):
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts

    client = MlflowClient(tracking_uri=micro.tracking, registry_uri=micro.tracking)
    (version,) = client.search_model_versions("name='micro-gpt2'")
    run = client.get_run(version.run_id)
    test = micro.metrics()["test"]
    assert run.data.metrics["test_loss"] == pytest.approx(test["test_loss"])
    assert run.data.metrics["test_perplexity"] == pytest.approx(math.exp(test["test_loss"]))
    assert test["test_tokens"] > 1000 and 0 < test["test_bpb"] < 8
    assert run.data.tags["tuner.study"] == "micro" and run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "micro-final"
    curve = client.get_metric_history(run.info.run_id, "val_loss")  # step = tokens seen
    assert [m.step for m in curve] == [TRIAL_TOKENS // 2, TRIAL_TOKENS]
    folder = Path(
        download_artifacts(
            artifact_uri=client.get_model_version_download_uri("micro-gpt2", version.version)
        )
    )
    files = {str(p.relative_to(folder)) for p in folder.rglob("*")}  # an MLflow model
    assert {"MLmodel", "model/config.json", "model/model.safetensors"} <= files
    assert "components/tokenizer/tokenizer.json" in files


def test_generate_samples_reproducibly(micro):
    args = ["generate", str(micro.final), "--prompt", "ROMEO:", "--max-new-tokens", "16"]
    first, again = cli(*args, "--seed", "1"), cli(*args, "--seed", "1")
    assert first.exit_code == 0, first.output
    assert first.output.startswith("ROMEO:") and first.output == again.output
    greedy = cli(*args, "--temperature", "0")
    assert greedy.exit_code == 0 and greedy.output.startswith("ROMEO:")
    one_line_error(cli(*args, "--temperature", "-1"), "--temperature: must be >= 0")
    one_line_error(cli("generate", "nowhere", "--prompt", "x"), "model folder not found")


def write_corpus(folder: Path, n_docs: int = 12) -> list[str]:
    """A tiny corpus unlike Shakespeare: plain repetitive ship's-log sentences."""
    names = []
    for i in range(n_docs):
        lines = [
            f"Day {d}: the ship sailed north, the wind was calm, the crew was well."
            for d in range(i * 30, i * 30 + 30)
        ]
        path = folder / f"log{i:02d}.txt"
        path.write_text("\n".join(lines), encoding="utf-8")
        names.append(path.name)
    return names


def test_fine_tune_from_a_saved_model_lowers_loss_on_a_new_corpus(micro, tmp_path):
    names = write_corpus(tmp_path)
    result = cli(
        "train",
        str(micro.best),
        "--init-from",
        str(micro.final),
        "--out",
        "tuned",
        "--tracking-uri",
        micro.tracking,
        "--tokens",
        "4096",
        "--set",
        f"data.paths=[{', '.join(names)}]",
        "--set",
        "data.source=files",
        "--set",
        "data.max_chars=0",
        "--set",
        "data.val_fraction=0.3",
        "--set",
        "data.test_fraction=0.3",
    )
    assert result.exit_code == 0, result.output
    tuned = tmp_path / "tuned"
    metrics = json.loads((tuned / "metrics.json").read_text())
    assert metrics["val"]["val_loss"] < metrics["init_val"]["init_val_loss"] - 0.5
    assert (tuned / "tokenizer.json").read_text() == (micro.final / "tokenizer.json").read_text()
    config = load_run_config(tuned / "run_config.yaml")
    assert config.tokenizer.kind == "pretrained" and config.tokenizer.name == str(micro.final)
    assert config.data.source == "files" and config.train.tokens == 4096
    saved = load_saved(tuned)
    assert saved.model.config.n_layer == load_saved(micro.final).model.config.n_layer
    one_line_error(
        cli("train", str(micro.best), "--init-from", str(micro.final), "--set", "model.n_layer=3"),
        "--set model.n_layer: with --init-from",
    )


def write_config(path: Path, **sections: dict) -> Path:
    raw = {key: dict(value) for key, value in TINY_BASE.items()}
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_lstm_round_trip_through_tuner(micro, tmp_path):
    config_path = write_config(tmp_path / "rnn.yaml", model={"arch": "lstm"}, train=FAST)
    result = cli("train", str(config_path), "--out", "lstm", "--tracking-uri", micro.tracking)
    assert result.exit_code == 0, result.output
    folder = tmp_path / "lstm"
    files = {p.name for p in folder.iterdir()}
    assert {"model.safetensors", "tuner_model.json", "tokenizer.json"} <= files
    assert "config.json" not in files
    saved = load_saved(folder)
    config = load_run_config(folder / "run_config.yaml")
    recorded = json.loads((folder / "metrics.json").read_text())["val"]["val_loss"]
    assert math.isclose(val_loss_of(saved.model, config), recorded, rel_tol=1e-5)
    assert saved.model.head.weight.data_ptr() == saved.model.embed.weight.data_ptr()  # tied
    sample = cli("generate", str(folder), "--prompt", "KING:", "--max-new-tokens", "8")
    assert sample.exit_code == 0 and sample.output.startswith("KING:")
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=micro.tracking, registry_uri=micro.tracking)
    (version,) = client.search_model_versions("name='rnn-lstm'")
    assert version.tags["tuner.arch"] == "lstm"
    run = client.get_run(version.run_id)
    assert client.get_experiment(run.info.experiment_id).name == "tuner-final"
    assert "tuner.study" not in run.data.tags and "test_loss" in run.data.metrics
    for _ in range(2):  # later runs reuse the experiment
        again = FinalRun(micro.tracking, "tuner-final", None, config, {})
        again.start()
        again.end("KILLED")
        assert again.experiment_id == run.info.experiment_id


def _existing(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    (tmp_path / "afile").write_text("x")


@pytest.mark.parametrize(
    "edit, args, message",
    [
        ({"optim": {"lr": -1}}, [], "optim.lr: must be > 0"),
        ({"model": {"arch": "rnn"}}, [], "model.arch: 'rnn' is not one of"),
        ({"train": {"bogus": 1}}, [], "train.bogus: unknown key"),
        ({}, ["--set", "train.batch_size=0"], "train.batch_size=0: train.batch_size: must be > 0"),
        ({}, ["--tokens", "1k", "--flops", "1e12"], "give one budget, not both"),
        ({}, ["--tokens", "lots"], "--tokens 'lots'"),
        ({}, ["--out", "full"], "--out full: folder exists and is not empty"),
        ({}, ["--out", "afile"], "--out afile: is a file"),
        ({}, ["--init-from", "nowhere"], "nowhere: model folder not found"),
        ({}, ["--tracking-uri", "ftp://x"], "--tracking-uri 'ftp://x'"),
        ({}, ["--tokens", "100"], "train.tokens: a budget of 100 tokens gives 0 steps"),
        ({"model": {"n_head": 3}}, [], "model: d_model 64 is not divisible by n_head 3"),
    ],
)
def test_invalid_config_or_flags_are_rejected_before_training(tmp_path, edit, args, message):
    config_path = write_config(tmp_path / "edited.yaml", **edit)
    _existing(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    one_line_error(cli("train", str(config_path), *args), message)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not stores.home().exists()  # no MLflow store, no run


def test_budget_flags_scale_the_run(tmp_path):
    from tuner.final import final_config

    path = write_config(tmp_path / "c.yaml")
    assert final_config(path, tokens=16_384).train.tokens == 16_384
    scaled = final_config(path, flops=1e12)
    assert scaled.train.flops == 1e12 and scaled.train.tokens == TINY_BASE["train"]["tokens"]
    assert np.isclose(final_config(path, overrides=["optim.lr=0.01"]).optim.lr, 0.01)
