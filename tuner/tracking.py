"""MLflow: one experiment per study, a parent run for the study, a nested child run per trial.

Child runs are opened when the trial starts, so their curves are live in the UI; metrics are
written in one batch per evaluation milestone (step = tokens seen). Every run is ended with a
status mirroring the trial: FINISHED (complete), KILLED (pruned, diverged, interrupted),
FAILED (error, out of memory).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from tuner.config import ConfigError, RunConfig
from tuner.train import Milestone, TrainResult

TRACKING_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks", "file")
# Logged once when the run ends (tokens_per_second is already streamed at every milestone).
COST_KEYS = (
    "n_params",
    "n_params_non_embedding",
    "train_flops",
    "tokens_seen",
    "wall_seconds",
    "train_seconds",
    "eval_seconds",
    "mfu",
    "peak_memory_bytes",
    "price_usd",
)


def check_tracking_uri(uri: str) -> str:
    scheme = uri.split(":", 1)[0].split("+", 1)[0] if "://" in uri else ""
    if scheme not in TRACKING_SCHEMES:
        raise ConfigError(
            f"--tracking-uri {uri!r}: expected a URI with one of the schemes "
            f"{', '.join(TRACKING_SCHEMES)} (e.g. sqlite:///mlruns/mlflow.db)"
        )
    return uri


class Tracker:
    """A thin layer over `MlflowClient` that knows tuner's run layout."""

    def __init__(self, tracking_uri: str):
        from mlflow import MlflowClient

        self.uri = check_tracking_uri(tracking_uri)
        if self.uri.startswith("sqlite:///"):
            Path(self.uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=self.uri)

    # ------------------------------------------------------------ experiment and parent run

    def experiment_for(self, study_name: str) -> str:
        """The study's experiment id, created on first use (artifacts beside a SQLite store)."""
        exp = self.client.get_experiment_by_name(study_name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        location = None
        if self.uri.startswith("sqlite:///"):
            db = Path(self.uri[len("sqlite:///") :]).resolve()
            location = (db.parent / "artifacts" / study_name).as_uri()
        return self.client.create_experiment(
            study_name, artifact_location=location, tags={"tuner.study": study_name}
        )

    def start_parent(
        self, experiment_id: str, study_name: str, settings: dict[str, Any], space_yaml: str
    ) -> str:
        run = self.client.create_run(
            experiment_id,
            run_name=f"study-{study_name}",
            tags={"tuner.kind": "study", "optuna.study": study_name},
        )
        self._log_params(run.info.run_id, {k: v for k, v in settings.items() if v is not None})
        self.client.log_text(run.info.run_id, space_yaml, "space.yaml")
        return run.info.run_id

    def reopen(self, run_id: str) -> None:
        self.client.update_run(run_id, status="RUNNING")

    def end(self, run_id: str, status: str) -> None:
        self.client.set_terminated(run_id, status=status)

    def update_best(
        self,
        parent_id: str,
        number: int,
        value: float,
        metrics: dict[str, float],
        run_id: str | None,
    ) -> None:
        from mlflow.entities import Metric, RunTag

        now = _now()
        values = {"best_value": value, "best_trial": float(number)}
        values |= {
            f"best_{k}": v
            for k, v in metrics.items()
            if k in ("val_loss", "val_perplexity", "val_bpb", "val_accuracy")
        }
        tags = [RunTag("best_trial", str(number))] + (
            [RunTag("best_run_id", run_id)] if run_id else []
        )
        self.client.log_batch(
            parent_id,
            metrics=[Metric(k, float(v), now, number) for k, v in values.items()],
            tags=tags,
        )

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    # ------------------------------------------------------------ trial runs

    def start_trial(
        self,
        experiment_id: str,
        parent_id: str,
        study_name: str,
        number: int,
        sampler: str,
        config: RunConfig,
        params: dict[str, Any],
    ) -> TrialRun:
        tags = {
            "mlflow.parentRunId": parent_id,
            "tuner.kind": "trial",
            "optuna.study": study_name,
            "optuna.trial_number": str(number),
            "optuna.sampler": sampler,
            "tuner.state": "RUNNING",
        }
        run = self.client.create_run(experiment_id, run_name=f"trial-{number}", tags=tags)
        flat = config.flat() | {name: value for name, value in params.items()}
        self._log_params(run.info.run_id, flat)
        self.client.log_text(run.info.run_id, config.to_yaml(), "config.yaml")
        return TrialRun(self, run.info.run_id)

    def _log_params(self, run_id: str, values: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, _param_str(v)) for k, v in values.items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params a batch
            self.client.log_batch(run_id, params=items[start : start + 100])


class TrialRun:
    """The MLflow run of one trial."""

    def __init__(self, tracker: Tracker, run_id: str):
        self.tracker = tracker
        self.run_id = run_id
        self.ended = False

    def log_milestone(self, milestone: Milestone) -> None:
        from mlflow.entities import Metric

        now = _now()
        metrics = [
            Metric(k, float(v), now, milestone.tokens_seen) for k, v in milestone.metrics.items()
        ]
        self.tracker.client.log_batch(self.run_id, metrics=metrics)

    def finish(
        self,
        status: str,
        state: str,
        result: TrainResult | None = None,
        reason: str = "",
        traceback: str = "",
    ) -> None:
        """End the run; `status` is MLflow's, `state` the Optuna trial state it mirrors."""
        if self.ended:
            return
        from mlflow.entities import Metric, RunTag

        client = self.tracker.client
        tags = [RunTag("tuner.state", state)]
        if reason:
            tags.append(RunTag("tuner.reason", reason[:5000]))
        metrics = []
        if result is not None:
            now = _now()
            step = int(result.cost.get("tokens_seen", 0))
            metrics = [
                Metric(k, float(result.cost[k]), now, step) for k in COST_KEYS if k in result.cost
            ]
            tags.append(RunTag("tuner.device", str(result.cost.get("device", ""))))
        client.log_batch(self.run_id, metrics=metrics, tags=tags)
        if traceback:
            client.log_text(self.run_id, traceback, "traceback.txt")
        client.set_terminated(self.run_id, status=status)
        self.ended = True


def _param_str(value: Any) -> str:
    if isinstance(value, list | tuple | dict):
        return yaml.safe_dump(value, default_flow_style=True).strip()
    return str(value)


def _now() -> int:
    return int(time.time() * 1000)
