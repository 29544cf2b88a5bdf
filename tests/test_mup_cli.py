"""μP from the command line: `tuner export --width/--params` of a μP study, `tuner train` of
the exported recipe, `tuner mup check`, and bad input as one line with exit 2.

A one-trial μP study (nano GPT-2, d_model 64, 4k tokens) is built once for the module.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import torch
import yaml

from tests.conftest import TINY_BASE
from tests.helpers import cli, project, write_space
from tuner.config import RunConfig, load_run_config
from tuner.data import load_token_data
from tuner.evaluate import evaluate
from tuner.saved import load_saved
from tuner.width import non_embedding_params

BASE = copy.deepcopy(TINY_BASE)
BASE["model"]["parametrization"] = "mup"
BASE["train"].update({"tokens": 4096, "threads": 1})


@dataclass
class MuStudy:
    root: Path
    storage: str
    tracking: str

    def trial(self) -> optuna.trial.FrozenTrial:
        return optuna.load_study(study_name="mu", storage=self.storage).trials[0]

    def export(self, *args: str):
        return cli("export", "mu", "--storage", self.storage, *args)

    def train(self, config: Path, out: str):
        return cli("train", str(config), "--out", out, "--tracking-uri", self.tracking)


@pytest.fixture(scope="module")
def mu(tmp_path_factory, shared_cache):
    root = tmp_path_factory.mktemp("mu-study")
    with project(root, shared_cache):
        space = write_space(
            root / "space.yaml",
            {"learning_rate": {"choices": [3e-3]}},
            base=BASE,
            sampler="random",  # (a one-point grid trips optuna's GridSampler in tuner's queue)
            n_trials=1,
        )
        created = cli("study", "create", "mu", "--space", str(space))
        assert created.exit_code == 0, created.output
        yield MuStudy(
            root, f"sqlite:///{root}/mlruns/optuna.db", f"sqlite:///{root}/mlruns/mlflow.db"
        )


def one_line_error(result, message: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output, lines


def val_loss_of(model: torch.nn.Module, config: RunConfig) -> float:
    data = load_token_data(config.data, config.tokenizer)
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


def test_export_at_the_trials_width_reproduces_the_trial(mu):
    """The μP rules run in `tuner train` exactly as in the trial: same loss to the last bit
    that the trainer's determinism allows."""
    result = mu.export("--width", "64", "-o", str(mu.root / "same.yaml"))
    assert result.exit_code == 0, result.output
    assert "at d_model 64 (mup)" in result.output and "warning" not in result.output
    config = load_run_config(mu.root / "same.yaml")
    assert (config.model.parametrization, config.model.base_width) == ("mup", 64)
    trained = mu.train(mu.root / "same.yaml", str(mu.root / "same"))
    assert trained.exit_code == 0, trained.output
    metrics = yaml.safe_load((mu.root / "same" / "metrics.json").read_text())
    trial_loss = mu.trial().user_attrs["metrics"]["val_loss"]
    assert math.isclose(metrics["val"]["val_loss"], trial_loss, rel_tol=1e-4)


def test_export_at_another_width_round_trips_through_tuner_train(mu):
    path = mu.root / "wide.yaml"
    result = mu.export("--width", "128", "-o", str(path))
    assert result.exit_code == 0, result.output
    assert "at d_model 128 (mup)" in result.output
    written = yaml.safe_load(path.read_text())
    assert written["provenance"]["width_transfer"] == {
        "from_width": 64,
        "to_width": 128,
        "parametrization": "mup",
        "base_width": 64,
        "non_embedding_params": non_embedding_params(load_run_config(path)),
    }
    config = load_run_config(path)
    mc = config.model
    assert (mc.d_model, mc.n_head, mc.d_ff, mc.n_layer) == (128, 4, 512, 2)  # head dim 32 kept
    assert (mc.parametrization, mc.base_width) == ("mup", 64)
    assert config.optim.lr == pytest.approx(3e-3)  # the tuned lr, unchanged
    trained = mu.train(path, str(mu.root / "wide"))
    assert trained.exit_code == 0, trained.output
    assert load_run_config(mu.root / "wide" / "run_config.yaml") == config
    saved = load_saved(mu.root / "wide").model  # a plain transformers model, μP folded in
    assert type(saved.get_output_embeddings()) is torch.nn.Linear
    assert saved.config.hidden_size == 128
    recorded = yaml.safe_load((mu.root / "wide" / "metrics.json").read_text())["val"]["val_loss"]
    assert math.isclose(val_loss_of(saved, config), recorded, rel_tol=1e-5)


def test_export_by_parameter_count(mu):
    path = mu.root / "by-params.yaml"
    result = mu.export("--params", "400k", "-o", str(path))
    assert result.exit_code == 0, result.output
    config = load_run_config(path)
    count = non_embedding_params(config)
    assert config.model.d_model % 32 == 0 and 0.6 < count / 4e5 < 1.6
    transfer = yaml.safe_load(path.read_text())["provenance"]["width_transfer"]
    assert transfer["non_embedding_params"] == count and transfer["base_width"] == 64


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--width", "80"], "--width 80: not a positive multiple of the head dim 32"),
        (["--width", "0"], "--width 0: not a positive multiple"),
        (["--width", "128", "--params", "1M"], "--width/--params: give exactly one of them"),
        (["--params", "lots"], "--params 'lots': expected a positive number"),
    ],
)
def test_export_bad_width_is_one_line_and_writes_nothing(mu, tmp_path, args, message):
    one_line_error(mu.export(*args, "-o", str(tmp_path / "x.yaml")), message)
    assert not (tmp_path / "x.yaml").exists()


# ---------------------------------------------------------------- tuner mup check


def write_config(path: Path, **model) -> Path:
    data = copy.deepcopy(TINY_BASE)
    data["model"].update(model)
    data["train"]["batch_size"] = 4
    path.write_text(yaml.safe_dump(data))
    return path


def test_mup_check_prints_the_table_and_writes_the_figure(tmp_path):
    config = write_config(tmp_path / "c.yaml")
    result = cli(
        "mup", "check", str(config), "--widths", "64,256", "--steps", "2", "--seeds", "1",
        "--lr", "3e-3", "-o", str(tmp_path / "figs" / "coord.html"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "after 2 Adam step(s)" in result.output and "256/64" in result.output
    line = next(x for x in result.output.splitlines() if x.startswith("logits RMS"))
    sp, mup = (float(part.split()[-1].rstrip("x,")) for part in line.split(": ", 1)[1].split(", "))
    assert sp > 1.5 * mup, line  # growing under SP, not under μP
    page = (tmp_path / "figs" / "coord.html").read_text()
    assert "plotly" in page and "Coordinate check" in page


@pytest.mark.parametrize(
    ("model", "args", "message"),
    [
        ({}, ["--widths", "64"], "--widths '64': needs two or more positive widths"),
        ({}, ["--widths", "64,x"], "--widths '64,x': expected comma-separated integers"),
        ({}, ["--steps", "0"], "--steps 0: must be >= 1"),
        ({}, ["-o", "coord.png"], "-o coord.png: expected an .html file name"),
        ({"arch": "lstm"}, [], "model.arch: the coordinate check is for gpt2 and llama"),
        ({"arch": "lstm", "parametrization": "mup"}, [], "model.parametrization: mup is defined"),
        ({"parametrization": "mup", "base_width": 48}, [], "model.base_width: 48 is not"),
    ],
)
def test_mup_check_bad_input_is_one_line(tmp_path, model, args, message):
    config = write_config(tmp_path / "c.yaml", **model)
    one_line_error(cli("mup", "check", str(config), *args), message)
    assert not (tmp_path / "coord.png").exists()


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["model.arch=lstm", "model.parametrization=mup"], "model.parametrization: mup is"),
        (["model.parametrization=mup", "model.base_width=48"], "model.base_width: 48 is not"),
        (["model.parametrization=mup", "optim.name=sgd"], "optim.name: mup's learning-rate"),
        (["model.parametrization=mu"], "model.parametrization"),
    ],
)
def test_tuner_train_rejects_bad_mup_settings(tmp_path, sets, message):
    config = write_config(tmp_path / "c.yaml")
    args = [arg for key in sets for arg in ("--set", key)]
    one_line_error(cli("train", str(config), *args, "--out", str(tmp_path / "m")), message)
    assert not (tmp_path / "m").exists()
