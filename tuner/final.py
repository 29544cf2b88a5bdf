"""`tuner train`: train the final model from an exported config, test it, save it, register it.

The config is trained exactly as written (only the budget may be scaled; `train_run` derives
the steps, so the schedule stretches with it), so the trial's own budget reproduces the trial.
The model is evaluated on validation and on the held-out test split that no trial has seen,
saved as a folder transformers loads (see saved.py), logged to MLflow with its curves and test
metrics, and registered as a new version in the Model Registry. `--init-from` fine-tunes a saved
model: the corpus is then tokenized with the saved tokenizer, never a newly trained one.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from tuner import stores, version
from tuner.config import (
    RunConfig,
    TokenizerConfig,
    apply_overrides,
    from_dict,
    load_run_config,
    load_yaml,
    parse_overrides,
)
from tuner.data import TokenData, load_token_data
from tuner.device import autocast_for, resolve_device
from tuner.errors import ConfigError, TrainingError
from tuner.evaluate import evaluate
from tuner.files import DestinationTaken, staged_dir
from tuner.finetune import check_vocab
from tuner.metrics import LOGGED_COST
from tuner.saved import SavedModel, load_saved, save_model_dir
from tuner.startup import describe_run
from tuner.tracking import FinalRun, check_tracking_uri
from tuner.train import Milestone, train_run
from tuner.units import parse_amount

TEST_TOKENS_MAX = 1 << 20
"""The test split is scored in full up to this many tokens."""
NAME = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class FinalResult:
    """What `tuner train` produced and where it went."""

    out_dir: Path
    config: RunConfig
    val: dict[str, float]
    test: dict[str, float]
    cost: dict[str, Any]
    run_id: str
    experiment: str
    registered_name: str
    version: str
    init_val: dict[str, float] = field(default_factory=dict)
    """Validation metrics of the `--init-from` model before fine-tuning (empty otherwise)."""
    prediction: dict[str, Any] = field(default_factory=dict)
    """A scaling recipe's predicted val_loss beside the achieved one (`compare_prediction`)."""


# ---------------------------------------------------------------- config and names


def read_provenance(path: str | Path) -> dict[str, Any]:
    """The `provenance` block `tuner export` wrote (empty for a hand-written config)."""
    data = load_yaml(path)
    prov = data.get("provenance") if isinstance(data, dict) else None
    return prov if isinstance(prov, dict) else {}


def compare_prediction(
    prov: dict[str, Any], val: dict[str, float], cost: dict[str, Any]
) -> dict[str, Any]:
    """The val_loss a scaling recipe predicted (`tuner scaling recommend -o`) beside the one
    achieved; compared only if the run trained the parameters and tokens it was made for."""
    pred = prov.get("prediction")
    if not isinstance(pred, dict) or "val_loss" not in pred or "val_loss" not in val:
        return {}
    predicted, achieved = float(pred["val_loss"]), float(val["val_loss"])
    return {
        "predicted": predicted,
        "interval": pred.get("interval"),
        "achieved": achieved,
        "error": achieved / predicted - 1.0,
        "comparable": cost.get("n_params_non_embedding") == pred.get("params")
        and cost.get("tokens_seen") == pred.get("tokens"),
        "params": pred.get("params"),
        "tokens": pred.get("tokens"),
    }


def final_config(
    path: str | Path,
    tokens: float | None = None,
    flops: float | None = None,
    overrides: list[str] | None = None,
    saved: SavedModel | None = None,
) -> RunConfig:
    """The config as written, `--set` applied and validated like a study's, budget scaled."""
    config = load_run_config(path)
    parsed = parse_overrides(overrides)
    if saved is not None:
        fixed = [p for p, _ in parsed if p.split(".")[0] in ("model", "tokenizer")]
        if fixed:
            raise ConfigError(
                f"--set {fixed[0]}: with --init-from the model and tokenizer come "
                f"from {saved.path} and cannot be changed"
            )
    config = apply_overrides(config, parsed)
    if tokens is not None and flops is not None:
        raise ConfigError("--tokens and --flops: give one budget, not both")
    if tokens is not None:
        config = config.replace("train.tokens", int(tokens)).replace("train.flops", 0.0)
    if flops is not None:
        config = config.replace("train.flops", float(flops))
    if saved is not None:
        config = dataclasses.replace(
            config,
            model=saved.model_config,
            tokenizer=TokenizerConfig(kind="pretrained", name=str(saved.path.resolve())),
        )
    return from_dict(RunConfig, config.to_dict())  # validate the whole once more


def safe_name(text: str, fallback: str = "tuner") -> str:
    """Letters, digits, `_.-` only: usable as a folder, experiment and registered model name."""
    return NAME.sub("-", text).strip("-.")[:100] or fallback


def run_label(config_path: str | Path, prov: dict[str, Any]) -> str:
    """The study the config came from, else the config file's name."""
    return safe_name(str(prov.get("study") or Path(config_path).stem))


def check_out_dir(out: str | Path | None, label: str) -> Path:
    """`--out`, or runs/LABEL-TIMESTAMP; never an existing file or a folder with files in it."""
    if out is not None and not str(out).strip():
        raise ConfigError("--out: empty folder name")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(out).expanduser() if out is not None else Path("runs") / f"{label}-{stamp}"
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path}: is a file, not a folder")
    if path.is_dir() and any(path.iterdir()):
        raise ConfigError(f"--out {path}: folder exists and is not empty; pick a new one")
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir() or not os.access(parent, os.W_OK):
                raise ConfigError(f"--out {path}: cannot create it under {parent}")
            break
    return path


def check_experiment(name: str) -> str:
    if not name.strip() or len(name) > 200:
        raise ConfigError(f"--experiment {name!r}: give a name of 1 to 200 characters")
    return name


# ---------------------------------------------------------------- evaluation


def score(
    model: nn.Module,
    tokens: np.ndarray,
    data: TokenData,
    config: RunConfig,
    n_tokens: int,
    prefix: str,
) -> dict[str, float]:
    """`evaluate` on `tokens`, metric names starting with `prefix` (test_, init_val_)."""
    device = next(model.parameters()).device
    metrics = evaluate(
        model,
        tokens,
        data.token_bytes,
        config.train.seq_len,
        n_tokens,
        config.train.eval_batch_size,
        device,
        autocast_for(config.train.precision, device),
    )
    metrics = {prefix + k.removeprefix("val_"): v for k, v in metrics.items()}
    metrics[prefix + "tokens"] = float(min(n_tokens, len(tokens) - 1))
    return metrics


# ---------------------------------------------------------------- the command


def train_final(
    config_path: str | Path,
    tokens: str | float | None = None,
    flops: str | float | None = None,
    out: str | Path | None = None,
    overrides: list[str] | None = None,
    init_from: str | Path | None = None,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    registered_name: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    on_note: Callable[[str], None] | None = None,
    on_milestone: Callable[[Milestone], None] | None = None,
) -> FinalResult:
    """Train, test, save and register the final model of `config_path`.

    `on_note` hears one line on what is trained once the config has passed every check;
    `on_milestone` hears every evaluation and `on_progress` (tokens, total) every step.

    Everything the user gave is checked before training starts and before anything is written
    to MLflow; the model folder appears complete or not at all (it is written beside its
    destination and renamed into place).
    """
    saved = load_saved(init_from) if init_from is not None else None
    prov = read_provenance(config_path)
    config = final_config(
        config_path,
        parse_amount(tokens, "--tokens"),
        parse_amount(flops, "--flops"),
        overrides,
        saved,
    )
    label = run_label(config_path, prov)
    out_dir = check_out_dir(out, label)
    study = str(prov["study"]) if prov.get("study") else None
    experiment = check_experiment(experiment or (f"{label}-final" if study else "tuner-final"))
    registered_name = safe_name(registered_name or f"{label}-{config.model.arch}")
    uri = check_tracking_uri(tracking_uri or stores.default_tracking_uri())

    if saved is not None:
        data = load_token_data(config.data, config.tokenizer, saved.tokenizer_file)
        check_vocab(saved, data)
    else:
        data = load_token_data(config.data, config.tokenizer)
    if config.eval.tasks:  # datasets, columns and classes, before training
        from tuner.tasks import validate_tasks

        validate_tasks(config, ("test",))
    about = describe_run(config, data.vocab_size, saved.model if saved is not None else None)
    if on_note:
        on_note(about)
    tags = _run_tags(prov, saved, out_dir)
    run = FinalRun(uri, experiment, study, config, tags, data)
    try:
        result = _train_and_save(
            config, data, saved, run, out_dir, prov, registered_name, on_progress, on_milestone
        )
    except BaseException as err:
        run.end("KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
        raise
    run.end("FINISHED")
    return result


def _run_tags(prov: dict[str, Any], saved: SavedModel | None, out_dir: Path) -> dict[str, str]:
    tags = {"tuner.out_dir": str(out_dir.absolute())}
    if prov.get("trial") is not None:
        tags["tuner.source_trial"] = str(prov["trial"])
    if prov.get("mlflow_run_id"):
        tags["tuner.source_run_id"] = str(prov["mlflow_run_id"])
    if saved is not None:
        tags["tuner.init_from"] = str(saved.path.resolve())
    return tags


def _train_and_save(
    config: RunConfig,
    data: TokenData,
    saved: SavedModel | None,
    run: FinalRun,
    out_dir: Path,
    prov: dict[str, Any],
    registered_name: str,
    on_progress: Callable[[int, int], None] | None,
    on_milestone: Callable[[Milestone], None] | None = None,
) -> FinalResult:
    init_val: dict[str, float] = {}
    init_model = None
    if saved is not None:
        init_model = saved.model.to(resolve_device(config.train.device))
        init_val = score(init_model, data.val, data, config, config.train.eval_tokens, "init_val_")
        run.pending = dict(init_val)

    def progress(tokens: int, total: int) -> None:
        run.start()  # the first step ran: the config passed every check in train_run
        if on_progress:
            on_progress(tokens, total)

    def milestone(m: Milestone) -> None:
        run.log_milestone(m)
        if on_milestone:
            on_milestone(m)

    result = train_run(
        config, data, on_milestone=milestone, on_progress=progress, init_model=init_model
    )
    run.start()
    if result.status != "complete":
        raise TrainingError(
            f"training stopped: {result.reason or result.status}; "
            "try a lower optim.lr or a larger train.tokens"
        )
    test = score(result.model, data.test, data, config, TEST_TOKENS_MAX, "test_")
    if config.eval.tasks:  # downstream tasks on the test split: metrics task.NAME.METRIC
        from tuner.tasks import run_tasks

        tasks = run_tasks(config, result.model, data, split="test")
        test |= tasks.flat()
        result.cost["task_seconds"] = tasks.total_seconds
    figures = {k: result.cost[k] for k in LOGGED_COST if k in result.cost}
    prediction = compare_prediction(prov, result.metrics, result.cost)
    if prediction.get("comparable"):  # a scaling recipe: how far its prediction was off
        figures |= {"predicted_val_loss": prediction["predicted"]}
        figures |= {"prediction_error": prediction["error"]}
    run.log_metrics(test | figures, step=int(result.cost["tokens_seen"]))
    metrics = {"val": result.metrics, "test": test, "init_val": init_val, "cost": result.cost}
    folder_prov = {
        **({"source": prov} if prov else {}),
        "mlflow_run_id": run.run_id,
        "registered_model": registered_name,
        "init_from": str(saved.path.resolve()) if saved is not None else None,
        "trained_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tuner_version": version(),
    }
    write_model_dir(out_dir, result.model, data.tokenizer_path, config, folder_prov, metrics)
    model_tags = {
        "tuner.arch": config.model.arch,
        "tuner.run_id": run.run_id,
        "test_perplexity": f"{test['test_perplexity']:.6g}",
    }
    if prov.get("study"):
        model_tags["tuner.study"] = str(prov["study"])
    model_version = _register(run, out_dir, registered_name, config.model.arch, model_tags)
    return FinalResult(
        out_dir,
        config,
        result.metrics,
        test,
        result.cost,
        run.run_id,
        run.experiment,
        registered_name,
        model_version,
        init_val,
        prediction,
    )


def _register(run: FinalRun, out_dir: Path, name: str, arch: str, tags: dict[str, str]) -> str:
    """Register the saved folder as an MLflow model (transformers or pytorch flavour); a
    failure keeps the folder and says so in one line."""
    from mlflow.exceptions import MlflowException

    from tuner.registry import write_mlflow_model

    def write(folder: Path, model_id: str) -> None:
        write_mlflow_model(out_dir, folder, run.run_id, model_id, name)

    try:
        return run.log_model(write, name, arch, tags)
    except MlflowException as err:
        raise ConfigError(
            f"the model is saved in {out_dir}, but logging it to MLflow failed: "
            f"{str(err).splitlines()[0][:300]}"
        ) from None


def write_model_dir(
    out_dir: Path,
    model: nn.Module,
    tokenizer_file: Path,
    config: RunConfig,
    prov: dict[str, Any],
    metrics: dict[str, Any],
) -> None:
    """Save into a hidden sibling folder, then rename it to `out_dir` in one step."""
    try:
        with staged_dir(out_dir) as tmp:
            save_model_dir(tmp, model, tokenizer_file, config, prov, metrics)
    except DestinationTaken as err:
        raise ConfigError(
            f"--out {out_dir}: something filled it during training; the model is kept in "
            f"{err.staged}"
        ) from None
