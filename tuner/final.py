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
import shutil
import time
import uuid
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tuner import cost, stores
from tuner.config import (
    ConfigError,
    RunConfig,
    TokenizerConfig,
    apply_overrides,
    from_dict,
    load_run_config,
    load_yaml,
    parse_overrides,
)
from tuner.data import TokenData, load_token_data
from tuner.export import current_umask, parse_amount, tuner_version
from tuner.finetune import check_vocab
from tuner.saved import SavedModel, load_saved, save_model_dir
from tuner.tracking import COST_KEYS, Tracker, TrialRun, check_tracking_uri
from tuner.train import Milestone, evaluate, train_run

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


# ---------------------------------------------------------------- config and names


def read_provenance(path: str | Path) -> dict[str, Any]:
    """The `provenance` block `tuner export` wrote (empty for a hand-written config)."""
    data = load_yaml(path)
    prov = data.get("provenance") if isinstance(data, dict) else None
    return prov if isinstance(prov, dict) else {}


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


def _autocast(config: RunConfig, device: torch.device) -> Callable[[], Any]:
    """The same precision rule as train_run: bf16 autocast on CUDA under `auto`."""
    tc = config.train
    bf16 = tc.precision == "bf16" or (tc.precision == "auto" and device.type == "cuda")
    return (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else nullcontext


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
        _autocast(config, device),
    )
    metrics = {prefix + k.removeprefix("val_"): v for k, v in metrics.items()}
    metrics[prefix + "tokens"] = float(min(n_tokens, len(tokens) - 1))
    return metrics


# ---------------------------------------------------------------- MLflow


class FinalRun:
    """The MLflow run of a final training: curves, test metrics, config and the model.

    Nothing reaches MLflow until the first training step has run (`start` is called from the
    progress callback), so a config that `train_run` rejects leaves no run and no experiment.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        study: str | None,
        config: RunConfig,
        tags: dict[str, str],
    ):
        self.uri = tracking_uri
        self.experiment = experiment
        self.study = study
        self.config = config
        self.tags = tags
        self.run_id = ""
        self.pending: dict[str, float] = {}
        """Metrics measured before the run exists (the --init-from model's scores)."""

    def start(self) -> None:
        if self.run_id:
            return
        self.tracker = Tracker(self.uri)
        client = self.tracker.client
        self.experiment_id = self.tracker.experiment_for(self.experiment)
        client.set_experiment_tag(self.experiment_id, "tuner.kind", "final")
        if self.study:  # experiment_for tags it with its own name; name the study instead
            client.set_experiment_tag(self.experiment_id, "tuner.study", self.study)
        elif "tuner.study" in client.get_experiment(self.experiment_id).tags:
            client.delete_experiment_tag(self.experiment_id, "tuner.study")
        tags = {
            "tuner.kind": "final",
            **({"tuner.study": self.study} if self.study else {}),
            **self.tags,
        }
        run = client.create_run(
            self.experiment_id, run_name=f"final-{self.config.model.arch}", tags=tags
        )
        self.run_id = run.info.run_id
        self.tracker._log_params(self.run_id, self.config.flat())
        client.log_text(self.run_id, self.config.to_yaml(), "config.yaml")
        self.curves = TrialRun(self.tracker, self.run_id)
        if self.pending:
            self.log_metrics(self.pending)

    def log_milestone(self, milestone: Milestone) -> None:
        self.start()
        self.curves.log_milestone(milestone)  # step = tokens seen, as in every trial

    def log_metrics(self, values: dict[str, Any], step: int = 0) -> None:
        from mlflow.entities import Metric

        self.start()
        now = int(time.time() * 1000)
        metrics = [
            Metric(k, float(v), now, step)
            for k, v in values.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        ]
        self.tracker.client.log_batch(self.run_id, metrics=metrics)

    def log_model(self, folder: Path, registered_name: str, arch: str, tags: dict[str, str]) -> str:
        """Log the folder as an MLflow LoggedModel of this run and register a new version."""
        from mlflow.entities import LoggedModelOutput

        client = self.tracker.client
        model = client.create_logged_model(
            self.experiment_id, name="model", source_run_id=self.run_id, model_type=arch, tags=tags
        )
        client.log_model_artifacts(model.model_id, str(folder))
        client.finalize_logged_model(model.model_id, "READY")
        client.log_outputs(self.run_id, [LoggedModelOutput(model.model_id, 0)])
        self._ensure_registered(registered_name, tags)
        # source is the artifact location: a models:/ URI makes the store resolve it through
        # MLflow's global tracking URI, not this client's
        version = client.create_model_version(
            registered_name,
            source=model.artifact_location,
            run_id=self.run_id,
            model_id=model.model_id,
            tags=tags,
        )
        return str(version.version)

    def _ensure_registered(self, name: str, tags: dict[str, str]) -> None:
        from mlflow.exceptions import MlflowException

        client = self.tracker.client
        try:
            client.get_registered_model(name)
        except MlflowException:
            try:
                client.create_registered_model(
                    name, tags=tags, description="Final models trained by `tuner train`."
                )
            except MlflowException:  # another process created it meanwhile
                client.get_registered_model(name)

    def end(self, status: str) -> None:
        if self.run_id:
            self.tracker.end(self.run_id, status)


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
) -> FinalResult:
    """Train, test, save and register the final model of `config_path`.

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
    tags = _run_tags(prov, saved, out_dir)
    run = FinalRun(uri, experiment, study, config, tags)
    try:
        result = _train_and_save(
            config, data, saved, run, out_dir, prov, registered_name, on_progress
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
) -> FinalResult:
    init_val: dict[str, float] = {}
    init_model = None
    if saved is not None:
        init_model = saved.model.to(cost.resolve_device(config.train.device))
        init_val = score(init_model, data.val, data, config, config.train.eval_tokens, "init_val_")
        run.pending = dict(init_val)

    def progress(tokens: int, total: int) -> None:
        run.start()  # the first step ran: the config passed every check in train_run
        if on_progress:
            on_progress(tokens, total)

    result = train_run(
        config, data, on_milestone=run.log_milestone, on_progress=progress, init_model=init_model
    )
    run.start()
    if result.status != "complete":
        raise ConfigError(
            f"training stopped: {result.reason or result.status}; "
            "try a lower optim.lr or a larger train.tokens"
        )
    test = score(result.model, data.test, data, config, TEST_TOKENS_MAX, "test_")
    figures = {k: result.cost[k] for k in COST_KEYS if k in result.cost}
    run.log_metrics(test | figures, step=int(result.cost["tokens_seen"]))
    metrics = {"val": result.metrics, "test": test, "init_val": init_val, "cost": result.cost}
    folder_prov = {
        **({"source": prov} if prov else {}),
        "mlflow_run_id": run.run_id,
        "registered_model": registered_name,
        "init_from": str(saved.path.resolve()) if saved is not None else None,
        "trained_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tuner_version": tuner_version(),
    }
    write_model_dir(out_dir, result.model, data.tokenizer_path, config, folder_prov, metrics)
    model_tags = {
        "tuner.arch": config.model.arch,
        "tuner.run_id": run.run_id,
        "test_perplexity": f"{test['test_perplexity']:.6g}",
    }
    if prov.get("study"):
        model_tags["tuner.study"] = str(prov["study"])
    version = _register(run, out_dir, registered_name, config.model.arch, model_tags)
    return FinalResult(
        out_dir,
        config,
        result.metrics,
        test,
        result.cost,
        run.run_id,
        run.experiment,
        registered_name,
        version,
        init_val,
    )


def _register(run: FinalRun, out_dir: Path, name: str, arch: str, tags: dict[str, str]) -> str:
    """Log and register the saved folder; a failure keeps the folder and says so in one line."""
    from mlflow.exceptions import MlflowException

    try:
        return run.log_model(out_dir, name, arch, tags)
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
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()  # (mkdtemp would leave the final folder readable by its owner only)
    try:
        save_model_dir(tmp, model, tokenizer_file, config, prov, metrics)
        for path in tmp.iterdir():  # some writers (safetensors) leave files owner-only
            path.chmod(0o666 & ~current_umask())
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        os.replace(tmp, out_dir)  # replaces a missing or empty folder, never a full one
    except OSError:
        raise ConfigError(
            f"--out {out_dir}: something filled it during training; the model is kept in {tmp}"
        ) from None
