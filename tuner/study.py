"""Create, load, run, list and delete studies; the sampler and pruner registries.

A study stores its whole search space (base config included) and its MLflow locations in
its own user attributes, so `resume` and any worker need only the study name and storage.

The study's budget is its queue of WAITING trials (see `tuner.workers`): `create_study` and
`run_study` fill it up to the target, and every process, one or many, only pops from it.
Without `--storage`, a study lives in the default SQLite database, or, when created with
several local workers, in the default journal file (Optuna's advice for many processes on
one machine); `load_study` looks in both.
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
from tuner.workers import (
    JournalHeartbeatStorage,
    QueuedStudy,
    StaleTrialCallback,
    counted,
    drain,
    heartbeat_settings,
    pending,
    serialized,
)

ATTR = "tuner"
FINISHED_STATES = (
    optuna.trial.TrialState.COMPLETE,
    optuna.trial.TrialState.PRUNED,
    optuna.trial.TrialState.FAIL,
)
"""States that end a trial. A lost trial (FAIL with a retry) is finished but not counted:
`StudyHandle.finished_count` counts it through its retry, so nothing counts twice."""

optuna.logging.set_verbosity(optuna.logging.ERROR)  # tuner reports trial outcomes itself
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def make_sampler(space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
    name = space.sampler
    if name == "grid":
        return optuna.samplers.GridSampler(space.grid(), seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        startup = min(10, max(2, space.n_trials // 3))
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "nsga2":
        population = max(4, min(50, space.n_trials // 2))
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    return optuna.samplers.GPSampler(seed=seed)


def make_pruner(space: SearchSpace) -> optuna.pruners.BasePruner:
    milestones = space.base.train.milestones
    if space.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if space.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=milestones, reduction_factor=3
        )
    if space.pruner == "successive-halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.NopPruner()


def default_journal() -> str:
    """The default storage of a study created with several local workers: a journal file."""
    return str(stores.home() / "optuna-journal.log")


def open_storage(url: str | None, must_exist: bool = False) -> optuna.storages.BaseStorage:
    """An Optuna storage for `url` (default: SQLite under ./mlruns). Journal files end in .log.

    Every storage beats a heartbeat for running trials, so a trial whose worker died is failed
    after the grace period and retried once (see `tuner.workers`).
    """
    url = url or stores.default_storage()
    journal = url.endswith(".log") and "://" not in url
    if must_exist and url.startswith("sqlite:///") and not Path(url[10:]).is_file():
        raise ConfigError(f"--storage {url}: no such database (no studies yet)")
    if must_exist and journal and not Path(url).is_file():
        raise ConfigError(f"--storage {url}: no such journal file (no studies yet)")
    interval, grace = heartbeat_settings()
    try:
        if journal:
            from optuna.storages.journal import JournalFileBackend

            stores.ensure_local(url)
            return JournalHeartbeatStorage(
                JournalFileBackend(url), interval, grace, StaleTrialCallback()
            )
        if "://" not in url:
            raise ValueError("not a URL")
        stores.ensure_local(url)
        return optuna.storages.RDBStorage(
            url,
            heartbeat_interval=interval,
            grace_period=grace,
            heartbeat_stale_trial_callback=StaleTrialCallback(),
            engine_kwargs=_engine_kwargs(url),
        )
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
        return serialized(Tracker(self.tracking_uri))

    def finished_count(self) -> int:
        """Finished trials that count toward the target (a lost trial counts via its retry)."""
        return len(counted(self.study.get_trials(deepcopy=False)))


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    return [s.study_name for s in storage.get_all_studies()]


def create_study(
    name: str,
    space: SearchSpace,
    storage_url: str | None = None,
    tracking_uri: str | None = None,
    local_workers: int = 1,
) -> StudyHandle:
    """Validate everything first, then write the study, its queue and its MLflow parent run.

    Without `storage_url`, one local worker gets the default SQLite database and several get
    the default journal file: SQLite answers concurrent writers with "database is locked".
    """
    stores.check_study_name(name)
    if storage_url is None:
        _check_new_name(name)
        storage_url = default_journal() if local_workers > 1 else stores.default_storage()
    tracking_uri = check_tracking_uri(tracking_uri or stores.default_tracking_uri())
    storage = open_storage(storage_url)
    if name in study_names(storage):
        raise ConfigError(
            f"study {name!r} already exists in {storage_url}; "
            f"use `tuner study resume {name}` or pick another name"
        )
    tracker = serialized(Tracker(tracking_uri))
    experiment_id = tracker.experiment_for(name)
    settings = {
        "space": space.name,
        "sampler": space.sampler,
        "pruner": space.pruner,
        "seed": space.seed,
        "n_trials": space.n_trials,
        "timeout": space.timeout,
        "objective": ",".join(f"{o.metric}:{o.direction}" for o in space.objectives),
        "storage": storage_url,
    }
    parent = tracker.start_parent(
        experiment_id, name, settings, yaml.safe_dump(space.raw, sort_keys=False)
    )
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=name,
            directions=space.directions,
            sampler=make_sampler(space, space.seed),
            pruner=make_pruner(space),
        )
    except BaseException:
        tracker.end(parent, "FAILED")
        raise
    study.set_user_attr(
        ATTR,
        {
            "space": space.raw,
            "tracking_uri": tracking_uri,
            "experiment_id": experiment_id,
            "parent_run_id": parent,
        },
    )
    fill_queue(study, space, space.n_trials)
    tracker.end(parent, "FINISHED")
    return StudyHandle(study, space, storage_url, tracking_uri, experiment_id, parent)


def _check_new_name(name: str) -> None:
    """A name must be new in both default storages, or `load_study` could not tell them apart."""
    try:
        found = locate_study(name)
    except ConfigError:
        return
    raise ConfigError(
        f"study {name!r} already exists in {found}; "
        f"use `tuner study resume {name}` or pick another name"
    )


def default_storages() -> list[str]:
    """The default storages that exist on disk: SQLite first, then the journal file."""
    urls = [stores.default_storage(), default_journal()]
    return [u for u in urls if Path(u.removeprefix("sqlite:///")).is_file()]


def locate_study(name: str) -> str:
    """Which default storage holds `name` (a study made with --workers is in the journal)."""
    urls = default_storages()
    if not urls:
        raise ConfigError(
            f"--storage {stores.default_storage()}: no such database (no studies yet)"
        )
    for url in urls:
        if name in study_names(open_storage(url)):
            return url
    raise ConfigError(f"no study named {name!r} in {' or '.join(urls)}")


def fill_queue(study: optuna.Study, space: SearchSpace, target: int) -> int:
    """Enqueue trials until finished + queued + running reaches `target`; returns how many.

    Grid points are enqueued once each (a point already tried or queued is skipped); other
    samplers get empty slots, whose params the sampler draws when a worker pops the slot.
    """
    trials = study.get_trials(deepcopy=False)
    missing = target - len(counted(trials)) - len(pending(trials))
    if missing <= 0:
        return 0
    if space.sampler == "grid":
        before = len(trials)
        for point in space.grid_points():
            study.enqueue_trial(point, skip_if_exists=True)
        return len(study.get_trials(deepcopy=False)) - before
    for _ in range(missing):
        study.enqueue_trial({})
    return missing


def load_study(
    name: str, storage_url: str | None = None, tracking_uri: str | None = None, seed_offset: int = 0
) -> StudyHandle:
    """Load a tuner study; `tracking_uri` overrides the one stored (e.g. a server for workers).

    `seed_offset` varies the sampler's seed: workers that load the study at the same moment
    must not draw the same params.
    """
    stores.check_study_name(name)
    storage_url = storage_url or locate_study(name)
    storage = open_storage(storage_url, must_exist=True)
    if name not in study_names(storage):
        raise ConfigError(f"no study named {name!r} in {storage_url}")
    peek = optuna.load_study(study_name=name, storage=storage)
    attrs = peek.user_attrs.get(ATTR)
    if not attrs:
        raise ConfigError(f"study {name!r} was not created by tuner (no stored space)")
    space = parse_space(attrs["space"])
    n_done = len(peek.get_trials(deepcopy=False, states=FINISHED_STATES))
    study = optuna.load_study(
        study_name=name,
        storage=storage,
        sampler=make_sampler(space, space.seed + n_done + seed_offset),
        pruner=make_pruner(space),
    )
    uri = tracking_uri or attrs["tracking_uri"]
    callback = storage.get_heartbeat_stale_trial_callback()
    if isinstance(callback, StaleTrialCallback):
        callback.tracking_uri = uri
    return StudyHandle(
        study, space, storage_url, uri, attrs["experiment_id"], attrs["parent_run_id"]
    )


def run_study(
    handle: StudyHandle,
    n_trials: int | None = None,
    timeout: float | None = None,
    reporter: Any = None,
    fill: bool = True,
) -> None:
    """Run queued trials until the study holds `n_trials` counted trials (or `timeout` passes).

    With `fill` (create, resume) the queue is first topped up to the target. A worker
    (`fill=False`, no `n_trials`) drains whatever is queued; when the queue is empty while
    other workers' trials still run, it waits: one of them may die and need its retry.
    """
    space = handle.space
    target = n_trials or (space.n_trials if fill else None)
    if fill and target is not None:
        fill_queue(handle.study, space, target)
    if target is not None and handle.finished_count() >= target:
        return
    tracker = handle.tracker()
    objective = Objective(
        space, handle.name, tracker, handle.experiment_id, handle.parent_run_id, reporter
    )
    study = QueuedStudy.of(handle.study)

    def update_best(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if objective.reporter:
            objective.reporter.trial_finished(trial, study)
        if space.multi_objective or trial.state != optuna.trial.TrialState.COMPLETE:
            return
        best = study.best_trial
        if best.number == trial.number:
            tracker.update_best(
                handle.parent_run_id,
                best.number,
                best.value,
                best.user_attrs.get("metrics", {}),
                best.user_attrs.get("mlflow_run_id"),
            )

    tracker.reopen(handle.parent_run_id)
    try:
        drain(
            study,
            objective,
            [update_best],
            timeout or space.timeout,
            done=lambda: target is not None and handle.finished_count() >= target,
        )
    except BaseException:
        with contextlib.suppress(Exception):
            tracker.end(handle.parent_run_id, "KILLED")
        raise
    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        with contextlib.suppress(Exception):  # the last worker out closes the study's run
            tracker.end(handle.parent_run_id, "FINISHED")


def delete_study(name: str, storage_url: str | None = None) -> None:
    """Delete the Optuna study and move its MLflow experiment out of the way (soft delete)."""
    handle = load_study(name, storage_url)
    optuna.delete_study(study_name=name, storage=open_storage(handle.storage_url))
    with contextlib.suppress(Exception):
        tracker = handle.tracker()
        exp = tracker.client.get_experiment_by_name(name)
        if exp is not None:
            # a deleted experiment keeps its name reserved; rename it so the name is free again
            new_name = f"{name}.deleted.{exp.experiment_id}"
            tracker.client.rename_experiment(exp.experiment_id, new_name)
            tracker.client.delete_experiment(exp.experiment_id)


def list_studies(storage_url: str | None = None) -> list[dict[str, Any]]:
    """One summary per study; without a URL, of both default storages. `trials` counts
    finished trials as `finished_count` does (a lost trial's retry stands for it)."""
    if (
        storage_url
        and storage_url.startswith("sqlite:///")
        and not Path(storage_url[10:]).is_file()
    ):
        return []
    urls = [storage_url] if storage_url else default_storages()
    out = []
    for url in urls:
        out.extend(_summaries(open_storage(url)))
    return out


def _summaries(storage: optuna.storages.BaseStorage) -> list[dict[str, Any]]:
    out = []
    for summary in storage.get_all_studies():
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        attrs = summary.user_attrs.get(ATTR, {})
        space = attrs.get("space", {})
        best = None
        with contextlib.suppress(Exception):
            best = study.best_value if len(summary.directions) == 1 else None
        starts = [t.datetime_start for t in trials if t.datetime_start]
        target = space.get("n_trials")
        with contextlib.suppress(Exception):  # a grid's target is its size, not the YAML's
            target = parse_space(space).n_trials
        out.append(
            {
                "name": summary.study_name,
                "space": space.get("name", "?"),
                "sampler": space.get("sampler", "?"),
                "trials": len(counted(trials)),
                "complete": sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials),
                "target": target,
                "best": best,
                "created": min(starts) if starts else None,
            }
        )
    return out


def trial_rows(handle: StudyHandle) -> list[dict[str, Any]]:
    """One row per trial that ran or runs for `tuner study show` (queued slots are left out),
    best trial(s) marked; a lost trial's reason names its retry."""
    study = handle.study
    best_numbers: set[int] = set()
    with contextlib.suppress(Exception):
        best_numbers = {t.number for t in study.best_trials}
    trials = study.get_trials(deepcopy=False)
    retried_as = {
        t.system_attrs["retry_history"][-1]: t.number
        for t in trials
        if t.system_attrs.get("retry_history")
    }
    rows = []
    for t in trials:
        if t.state == optuna.trial.TrialState.WAITING:
            continue
        metrics = t.user_attrs.get("metrics", {})
        cost = t.user_attrs.get("cost", {})
        duration = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start
            else None
        )
        reason = t.user_attrs.get("reason", "")
        if t.number in retried_as:
            reason = f"worker lost; retried as trial {retried_as[t.number]}"
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "params": t.params,
                "val_loss": metrics.get("val_loss"),
                "val_perplexity": metrics.get("val_perplexity"),
                "val_bpb": metrics.get("val_bpb"),
                "n_params": cost.get("n_params"),
                "train_flops": cost.get("train_flops"),
                "duration": duration,
                "reason": reason,
                "best": t.number in best_numbers,
                "mlflow_run_id": t.user_attrs.get("mlflow_run_id"),
            }
        )
    return rows
