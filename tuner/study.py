"""Create, load, run, list and delete studies; the sampler and pruner registries.

A study stores its whole search space (base config included) and its MLflow locations in
its own user attributes, so `resume` and any worker need only the study name and storage.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml

from tuner import stores
from tuner.config import ConfigError
from tuner.objective import Objective
from tuner.space import SearchSpace, parse_space
from tuner.tracking import Tracker, check_tracking_uri

ATTR = "tuner"
FINISHED_STATES = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                   optuna.trial.TrialState.FAIL)

optuna.logging.set_verbosity(optuna.logging.ERROR)  # tuner reports trial outcomes itself
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def make_sampler(space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
    name = space.sampler
    if name == "grid":
        return optuna.samplers.GridSampler(space.grid(), seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, space.n_trials // 3)))
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, space.n_trials // 2)))
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    return optuna.samplers.GPSampler(seed=seed)


def make_pruner(space: SearchSpace) -> optuna.pruners.BasePruner:
    milestones = space.base.train.milestones
    if space.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if space.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=milestones, reduction_factor=3)
    if space.pruner == "successive-halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.NopPruner()


def open_storage(url: str | None, must_exist: bool = False) -> optuna.storages.BaseStorage:
    """An Optuna storage for `url` (default: SQLite under ./mlruns). Journal files end in .log."""
    url = url or stores.default_storage()
    if must_exist and url.startswith("sqlite:///") and not Path(url[10:]).is_file():
        raise ConfigError(f"--storage {url}: no such database (no studies yet)")
    try:
        if url.endswith(".log") and "://" not in url:
            from optuna.storages.journal import JournalFileBackend

            stores.ensure_local(url)
            return optuna.storages.JournalStorage(JournalFileBackend(url))
        if "://" not in url:
            raise ValueError("not a URL")
        stores.ensure_local(url)
        return optuna.storages.RDBStorage(url, heartbeat_interval=30, grace_period=120,
                                          engine_kwargs=_engine_kwargs(url))
    except Exception as err:  # noqa: BLE001 - any failure to open is the user's URL
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise ConfigError(f"--storage {url}: cannot open storage ({first})") from None


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}
    return {"pool_pre_ping": True}


@dataclass
class StudyHandle:
    """An Optuna study together with its space and MLflow locations."""

    study: optuna.Study
    space: SearchSpace
    storage_url: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str

    @property
    def name(self) -> str:
        return self.study.study_name

    def tracker(self) -> Tracker:
        return Tracker(self.tracking_uri)

    def finished_count(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=FINISHED_STATES))


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    return [s.study_name for s in storage.get_all_studies()]


def create_study(name: str, space: SearchSpace, storage_url: str | None = None,
                 tracking_uri: str | None = None) -> StudyHandle:
    """Validate everything first, then write the study and its MLflow parent run."""
    stores.check_study_name(name)
    storage_url = storage_url or stores.default_storage()
    tracking_uri = check_tracking_uri(tracking_uri or stores.default_tracking_uri())
    storage = open_storage(storage_url)
    if name in study_names(storage):
        raise ConfigError(f"study {name!r} already exists in {storage_url}; "
                          f"use `tuner study resume {name}` or pick another name")
    tracker = Tracker(tracking_uri)
    experiment_id = tracker.experiment_for(name)
    settings = {"space": space.name, "sampler": space.sampler, "pruner": space.pruner,
                "seed": space.seed, "n_trials": space.n_trials, "timeout": space.timeout,
                "objective": ",".join(f"{o.metric}:{o.direction}" for o in space.objectives),
                "storage": storage_url}
    parent = tracker.start_parent(experiment_id, name, settings,
                                  yaml.safe_dump(space.raw, sort_keys=False))
    try:
        study = optuna.create_study(storage=storage, study_name=name, directions=space.directions,
                                    sampler=make_sampler(space, space.seed), pruner=make_pruner(space))
    except BaseException:
        tracker.end(parent, "FAILED")
        raise
    study.set_user_attr(ATTR, {"space": space.raw, "tracking_uri": tracking_uri,
                               "experiment_id": experiment_id, "parent_run_id": parent})
    if space.sampler == "grid":  # each grid point is queued once; workers pop them atomically
        for point in space.grid_points():
            study.enqueue_trial(point, skip_if_exists=True)
    tracker.end(parent, "FINISHED")
    return StudyHandle(study, space, storage_url, tracking_uri, experiment_id, parent)


def load_study(name: str, storage_url: str | None = None, tracking_uri: str | None = None) -> StudyHandle:
    """Load a tuner study; `tracking_uri` overrides the one stored (e.g. a server for workers)."""
    stores.check_study_name(name)
    storage_url = storage_url or stores.default_storage()
    storage = open_storage(storage_url, must_exist=True)
    if name not in study_names(storage):
        raise ConfigError(f"no study named {name!r} in {storage_url}")
    peek = optuna.load_study(study_name=name, storage=storage)
    attrs = peek.user_attrs.get(ATTR)
    if not attrs:
        raise ConfigError(f"study {name!r} was not created by tuner (no stored space)")
    space = parse_space(attrs["space"])
    n_done = len(peek.get_trials(deepcopy=False))
    study = optuna.load_study(study_name=name, storage=storage,
                              sampler=make_sampler(space, space.seed + n_done),
                              pruner=make_pruner(space))
    return StudyHandle(study, space, storage_url, tracking_uri or attrs["tracking_uri"],
                       attrs["experiment_id"], attrs["parent_run_id"])


def run_study(handle: StudyHandle, n_trials: int | None = None, timeout: float | None = None,
              reporter: Any = None) -> None:
    """Run trials until the study holds `n_trials` finished trials (or `timeout` passes)."""
    space = handle.space
    target = n_trials or space.n_trials
    remaining = target - handle.finished_count()
    if remaining <= 0:
        return
    tracker = handle.tracker()
    objective = Objective(space, handle.name, tracker, handle.experiment_id, handle.parent_run_id,
                          reporter)

    def stop_at_target(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if len(study.get_trials(deepcopy=False, states=FINISHED_STATES)) >= target:
            study.stop()
        if space.sampler == "grid" and not study.get_trials(
                deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
            study.stop()

    def update_best(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if objective.reporter:
            objective.reporter.trial_finished(trial, study)
        if space.multi_objective or trial.state != optuna.trial.TrialState.COMPLETE:
            return
        best = study.best_trial
        if best.number == trial.number:
            tracker.update_best(handle.parent_run_id, best.number, best.value,
                                best.user_attrs.get("metrics", {}), best.user_attrs.get("mlflow_run_id"))

    tracker.reopen(handle.parent_run_id)
    status = "FINISHED"
    try:
        handle.study.optimize(objective, n_trials=remaining, timeout=timeout or space.timeout,
                              catch=(Exception,), callbacks=[update_best, stop_at_target])
    except BaseException:
        status = "KILLED"
        raise
    finally:
        with contextlib.suppress(Exception):
            tracker.end(handle.parent_run_id, status)


def delete_study(name: str, storage_url: str | None = None) -> None:
    """Delete the Optuna study and move its MLflow experiment out of the way (soft delete)."""
    handle = load_study(name, storage_url)
    optuna.delete_study(study_name=name, storage=open_storage(handle.storage_url))
    with contextlib.suppress(Exception):
        tracker = handle.tracker()
        exp = tracker.client.get_experiment_by_name(name)
        if exp is not None:
            # a deleted experiment keeps its name reserved; rename it so the name is free again
            tracker.client.rename_experiment(exp.experiment_id, f"{name}.deleted.{exp.experiment_id}")
            tracker.client.delete_experiment(exp.experiment_id)


def list_studies(storage_url: str | None = None) -> list[dict[str, Any]]:
    url = storage_url or stores.default_storage()
    if url.startswith("sqlite:///") and not Path(url[10:]).is_file():
        return []
    storage = open_storage(url)
    out = []
    for summary in storage.get_all_studies():
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        attrs = summary.user_attrs.get(ATTR, {})
        space = attrs.get("space", {})
        best = None
        with contextlib.suppress(Exception):
            best = study.best_value if len(summary.directions) == 1 else None
        out.append({"name": summary.study_name, "space": space.get("name", "?"),
                    "sampler": space.get("sampler", "?"), "trials": len(trials),
                    "complete": sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials),
                    "target": space.get("n_trials"), "best": best,
                    "created": trials[0].datetime_start if trials else None})
    return out


def trial_rows(handle: StudyHandle) -> list[dict[str, Any]]:
    """One row per trial for `tuner study show`, best trial(s) marked."""
    study = handle.study
    best_numbers: set[int] = set()
    with contextlib.suppress(Exception):
        best_numbers = {t.number for t in study.best_trials}
    rows = []
    for t in study.get_trials(deepcopy=False):
        metrics = t.user_attrs.get("metrics", {})
        cost = t.user_attrs.get("cost", {})
        duration = (t.datetime_complete - t.datetime_start).total_seconds() \
            if t.datetime_complete and t.datetime_start else None
        rows.append({"number": t.number, "state": t.state.name, "params": t.params,
                     "val_loss": metrics.get("val_loss"), "val_perplexity": metrics.get("val_perplexity"),
                     "val_bpb": metrics.get("val_bpb"), "n_params": cost.get("n_params"),
                     "train_flops": cost.get("train_flops"), "duration": duration,
                     "reason": t.user_attrs.get("reason", ""), "best": t.number in best_numbers,
                     "mlflow_run_id": t.user_attrs.get("mlflow_run_id")})
    return rows
