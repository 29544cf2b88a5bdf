"""MLflow: one experiment per study, a parent run for the study, a nested child run per trial.

Child runs are opened when the trial starts, so their curves are live in the UI; metrics are
written in one batch per evaluation milestone (step = tokens seen), asynchronously when the
store is a tracking server (and waited for before the run ends). Every run is ended with a
status mirroring the trial: FINISHED (complete), KILLED (pruned, diverged, interrupted),
FAILED (error, out of memory). Runs also carry their data as dataset inputs (tuner.lineage)
and system metrics (tuner.sysmetrics); experiments carry what the UI needs to open them on
their training runs (tuner.mlflow_ui). Every writer goes through `Tracker.client`, which
holds the SQLite lock.
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tuner import mlflow_ui, stores
from tuner.config import RunConfig
from tuner.data import TokenData
from tuner.errors import ConfigError
from tuner.failures import guard, guard_client, mlflow_label
from tuner.files import file_lock
from tuner.lineage import dataset_inputs
from tuner.metrics import BEST_METRICS, LOGGED_COST
from tuner.sysmetrics import Point, SystemMetrics, interval_setting
from tuner.train import Milestone, TrainResult

TRACKING_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks", "file")


def check_tracking_uri(uri: str) -> str:
    scheme = uri.split(":", 1)[0].split("+", 1)[0] if "://" in uri else ""
    if scheme not in TRACKING_SCHEMES:
        raise ConfigError(
            f"--tracking-uri {uri!r}: expected a URI with one of the schemes "
            f"{', '.join(TRACKING_SCHEMES)} (e.g. sqlite:///mlruns/mlflow.db)"
        )
    return uri


DATASET_TRIES = 3
"""Tries to record a run's dataset inputs (see Tracker.log_data)."""


class Tracker:
    """A thin layer over `MlflowClient` that knows tuner's run layout."""

    def __init__(self, tracking_uri: str):
        from mlflow import MlflowClient

        self.uri = check_tracking_uri(tracking_uri)
        db = stores.sqlite_path(self.uri)
        if db is not None:
            stores.use_sqlite_wal()  # before MLflow opens its engine
        with guard(mlflow_label(self.uri)):  # store failures: one line
            if db is not None:
                db.parent.mkdir(parents=True, exist_ok=True)
                lock = db.with_name(db.name + ".lock")
                with file_lock(lock):  # the client creates a new store's tables: one at a time
                    self.client = SerializedClient(MlflowClient(tracking_uri=self.uri), lock)
            else:
                self.client = MlflowClient(tracking_uri=self.uri)
        self.client = guard_client(self.client, self.uri)
        self.asynchronous = stores.is_server(self.uri)
        """Milestone batches go out without waiting for a tracking server (never SQLite)."""

    # ------------------------------------------------------------ experiment and parent run

    def experiment_for(self, study_name: str) -> str:
        """The study's experiment id, created on first use (artifacts beside a SQLite store)."""
        exp = self.client.get_experiment_by_name(study_name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        location = None
        db = stores.sqlite_path(self.uri)
        if db is not None:
            location = (db.resolve().parent / "artifacts" / study_name).as_uri()
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
        params = list((yaml.safe_load(space_yaml) or {}).get("params") or {})
        metric, direction = mlflow_ui.objective_of(str(settings.get("objective") or ""))
        self.tag_experiment(experiment_id, mlflow_ui.study_tags(metric, direction, params))
        return run.info.run_id

    def tag_experiment(self, experiment_id: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_experiment_tag(experiment_id, key, value)

    def log_data(
        self, run_id: str, data: TokenData, config: RunConfig, splits: tuple[str, ...]
    ) -> None:
        """Record the splits of `data` the run reads as MLflow dataset inputs.

        MLflow looks a dataset up, then inserts it: workers whose first trials start at once
        race to insert the same one, and the losers get an error. Their next try finds it."""
        from mlflow.exceptions import MlflowException

        datasets = dataset_inputs(data.root, config.data, splits)
        for attempt in range(DATASET_TRIES):
            try:
                self.client.log_inputs(run_id, datasets=datasets)
                return
            except MlflowException:
                if attempt == DATASET_TRIES - 1:
                    raise
                time.sleep(0.5 * (attempt + 1))

    def system_metrics(self, run_id: str) -> SystemMetrics | None:
        """Start sampling system use into `run_id` ($TUNER_SYSTEM_METRICS seconds apart)."""
        interval = interval_setting()
        if interval <= 0:
            return None
        from mlflow.entities import Metric

        def log(points: list[Point]) -> None:
            metrics = [
                Metric(k, v, ms, step) for values, step, ms in points for k, v in values.items()
            ]
            for start in range(0, len(metrics), 1000):  # MLflow's limit per batch
                self.client.log_batch(run_id, metrics=metrics[start : start + 1000])

        return SystemMetrics(log, interval).start()

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
        values |= {f"best_{k}": v for k, v in metrics.items() if k in BEST_METRICS}
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
        data: TokenData | None = None,
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
        if data is not None:
            self.log_data(run.info.run_id, data, config, ("train", "val"))
        return TrialRun(self, run.info.run_id, self.system_metrics(run.info.run_id))

    def _log_params(self, run_id: str, values: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, _param_str(v)) for k, v in values.items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params a batch
            self.client.log_batch(run_id, params=items[start : start + 100])


class TrialRun:
    """The MLflow run of one trial."""

    def __init__(self, tracker: Tracker, run_id: str, monitor: SystemMetrics | None = None):
        self.tracker = tracker
        self.run_id = run_id
        self.monitor = monitor
        self.pending: list[Any] = []
        """Asynchronous milestone batches not yet confirmed by the tracking server."""
        self.ended = False

    def log_milestone(self, milestone: Milestone) -> None:
        from mlflow.entities import Metric

        now = _now()
        metrics = [
            Metric(k, float(v), now, milestone.tokens_seen) for k, v in milestone.metrics.items()
        ]
        if self.tracker.asynchronous:
            self.pending.append(
                self.tracker.client.log_batch(self.run_id, metrics=metrics, synchronous=False)
            )
        else:
            self.tracker.client.log_batch(self.run_id, metrics=metrics)

    def flush(self) -> None:
        """Stop system sampling and wait until every batch has reached the store (a failed
        one raises here, before the run is ended)."""
        if self.monitor is not None:
            self.monitor.stop()
            self.monitor = None
        pending, self.pending = self.pending, []
        for operation in pending:
            operation.wait()

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
                Metric(k, float(result.cost[k]), now, step) for k in LOGGED_COST if k in result.cost
            ]
            tags.append(RunTag("tuner.device", str(result.cost.get("device", ""))))
        try:
            self.flush()  # a batch the server refused is raised, once the run is ended
        finally:
            client.log_batch(self.run_id, metrics=metrics, tags=tags)
            if traceback:
                client.log_text(self.run_id, traceback, "traceback.txt")
            client.set_terminated(self.run_id, status=status)
            self.ended = True


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
        data: TokenData | None = None,
    ):
        self.uri = tracking_uri
        self.experiment = experiment
        self.study = study
        self.config = config
        self.tags = tags
        self.data = data
        """The token arrays it trains, validates and tests on (its dataset inputs)."""
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
        self.tracker.tag_experiment(self.experiment_id, mlflow_ui.final_tags())
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
        if self.data is not None:
            self.tracker.log_data(self.run_id, self.data, self.config, ("train", "val", "test"))
        self.curves = TrialRun(self.tracker, self.run_id, self.tracker.system_metrics(self.run_id))
        if self.pending:
            self.log_metrics(self.pending)

    def log_milestone(self, milestone: Milestone) -> None:
        self.start()
        self.curves.log_milestone(milestone)  # step = tokens seen, as in every trial

    def log_metrics(self, values: dict[str, Any], step: int = 0) -> None:
        from mlflow.entities import Metric

        self.start()
        now = _now()
        metrics = [
            Metric(k, float(v), now, step)
            for k, v in values.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        ]
        self.tracker.client.log_batch(self.run_id, metrics=metrics)

    def log_model(
        self,
        write: Callable[[Path, str], None],
        registered_name: str,
        arch: str,
        tags: dict[str, str],
    ) -> str:
        """Log an MLflow model as a LoggedModel of this run and register a new version.

        `write(folder, model_id)` writes the MLflow model (tuner.registry) into `folder`; it is
        uploaded with this run's client, so no process-wide tracking URI is involved.
        """
        from mlflow.entities import LoggedModelOutput

        client = self.tracker.client
        model = client.create_logged_model(
            self.experiment_id, name="model", source_run_id=self.run_id, model_type=arch, tags=tags
        )
        try:
            with tempfile.TemporaryDirectory(prefix="tuner-model-") as tmp:
                folder = Path(tmp) / "model"
                write(folder, model.model_id)
                client.log_model_artifacts(model.model_id, str(folder))
        except BaseException:
            client.finalize_logged_model(model.model_id, "FAILED")
            raise
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
            curves = getattr(self, "curves", None)  # None if `start` failed half-way
            try:
                if curves is not None:
                    curves.flush()
            finally:
                self.tracker.end(self.run_id, status)


def _param_str(value: Any) -> str:
    if isinstance(value, list | tuple | dict):
        return yaml.safe_dump(value, default_flow_style=True).strip()
    return str(value)


def _now() -> int:
    return int(time.time() * 1000)


class SerializedClient:
    """An `MlflowClient` whose calls hold an exclusive lock file beside a SQLite store.

    SQLite has one writer at a time; MLflow's read-then-write transactions from several
    processes can fail at once with "database is locked" instead of waiting. Calls are
    milliseconds and trials seconds, so queueing them costs nothing measurable.
    """

    def __init__(self, client: Any, lock_path: Path):
        self._client = client
        self._lock_path = lock_path

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def locked(*args: Any, **kwargs: Any) -> Any:
            with file_lock(self._lock_path):
                return attr(*args, **kwargs)

        return locked
