"""Create, load, run, list and delete studies.

A study stores its whole search space (base config included) and its MLflow locations in
its own user attributes (`records.StudyRecord`), so `resume` and any worker need only the
study name and storage. Its budget is its queue of WAITING trials (tuner.queue).

Without `--storage`, a study lives in the default SQLite database, or, when created with
several local workers, in the default journal file (Optuna's advice for many processes on
one machine); `load_study` looks in both.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from typing import Any

import optuna
import yaml
from optuna.trial import TrialState

from tuner import failures, relocate, stores
from tuner.errors import ConfigError, StoreError
from tuner.heartbeat import StaleTrialCallback
from tuner.objective import TrialObjective
from tuner.optuna_compat import QueuedStudy, study_storage
from tuner.progress import NullReporter, Reporter
from tuner.queue import drain, fill_queue
from tuner.reconcile import reconcile, stop_running
from tuner.records import FINISHED, StudyRecord, TrialRecord, counted
from tuner.samplers import describe_search, make_pruner, make_sampler
from tuner.space import SearchSpace, parse_space
from tuner.storage import open_storage, probe_tracking
from tuner.terminator import StudyStopper
from tuner.tracking import Tracker, check_tracking_uri
from tuner.warmstart import WarmStart, apply_warm_start, plan_warm_start


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
    warm_start: str | None = None,
    warm_top: int = 3,
) -> StudyHandle:
    """Validate everything first, then write the study, its queue and its MLflow parent run.

    Without `storage_url`, one local worker gets the default SQLite database and several get
    the default journal file: SQLite answers concurrent writers with "database is locked".
    Creation is atomic per name: the Optuna study is created first (the storage lets one
    creator win), so a loser writes nothing; a failure after it removes the study again.
    `warm_start` names an earlier study to seed this one from (tuner.warmstart).
    """
    stores.check_study_name(name)
    if space.base.eval.tasks:  # datasets, columns and classes, before anything is written
        from tuner.tasks import validate_tasks

        validate_tasks(space.base, ("val",))
    given_storage = storage_url
    if storage_url is None:
        _check_new_name(name)
        storage_url = stores.default_journal() if local_workers > 1 else stores.default_storage()
    stores.check_persistent(storage_url, "--storage")
    tracking_uri = check_tracking_uri(tracking_uri or stores.default_tracking_uri())
    stores.check_persistent(tracking_uri, "--tracking-uri")
    probe_tracking(tracking_uri)  # before anything is written: a dead server writes nothing
    storage = open_storage(storage_url)
    label = failures.optuna_label(storage_url)
    with failures.guard(label):
        if name in study_names(storage):
            raise _exists(name, storage_url)
        warm = None
        if warm_start:
            warm = _warm_plan(warm_start, storage, given_storage, space, warm_top)
        try:
            study = optuna.create_study(
                storage=storage,
                study_name=name,
                directions=space.directions,
                sampler=make_sampler(space, space.seed),
                pruner=make_pruner(space),
            )
        except optuna.exceptions.DuplicatedStudyError:  # another process won the name
            raise _exists(name, storage_url) from None
    parent = None
    tracker = Tracker(tracking_uri)
    try:
        relocate.follow_moves(tracking_uri)
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
            "search": describe_search(space),
            **({"warm_start": warm.describe()} if warm else {}),
        }
        parent = tracker.start_parent(
            experiment_id, name, settings, yaml.safe_dump(space.raw, sort_keys=False)
        )
        with failures.guard(label):
            StudyRecord(space.raw, tracking_uri, experiment_id, parent).write(study)
            if warm:
                apply_warm_start(study, warm)  # before the queue is filled: its seeds run first
            fill_queue(study, space, space.n_trials)
        tracker.end(parent, "FINISHED")
    except BaseException:
        _undo_create(storage, name, tracker, parent)
        raise
    return StudyHandle(study, space, storage_url, tracking_uri, experiment_id, parent)


def _exists(name: str, storage_url: str) -> ConfigError:
    return ConfigError(
        f"study {name!r} already exists in {stores.display(storage_url)}; "
        f"use `tuner study resume {name}` or pick another name"
    )


def _undo_create(
    storage: optuna.storages.BaseStorage, name: str, tracker: Tracker, parent: str | None
) -> None:
    """A creation that failed half-way leaves nothing behind, so the user who fixes the
    cause is not told "already exists"."""
    with contextlib.suppress(Exception):
        optuna.delete_study(study_name=name, storage=storage)
    if parent:
        with contextlib.suppress(Exception):
            tracker.client.delete_run(parent)


def _warm_plan(
    source: str,
    storage: optuna.storages.BaseStorage,
    given_storage: str | None,
    space: SearchSpace,
    top: int,
) -> WarmStart:
    """The warm start from study `source`: in the new study's storage, else (no --storage
    given) in either default storage."""
    stores.check_study_name(source)
    if source not in study_names(storage):
        if given_storage is not None:
            raise ConfigError(
                f"--warm-start {source}: no study named {source!r} in {given_storage}"
            )
        try:
            storage = open_storage(locate_study(source))
        except ConfigError as err:
            raise ConfigError(f"--warm-start {source}: {err}") from None
    other = optuna.load_study(study_name=source, storage=storage)
    return plan_warm_start(source, other, space, top)


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


def locate_study(name: str) -> str:
    """Which default storage holds `name` (a study made with --workers is in the journal)."""
    urls = stores.default_storages()
    if not urls:
        raise ConfigError(
            f"--storage {stores.default_storage()}: no such database (no studies yet)"
        )
    for url in urls:
        with failures.guard(failures.optuna_label(url)):
            if name in study_names(open_storage(url)):
                return url
    raise ConfigError(f"no study named {name!r} in {' or '.join(urls)}")


def load_study(
    name: str, storage_url: str | None = None, tracking_uri: str | None = None, seed_offset: int = 0
) -> StudyHandle:
    """Load a tuner study; `tracking_uri` overrides the one stored (e.g. a server for workers).

    `seed_offset` varies the sampler's seed: workers that load the study at the same moment
    must not draw the same params.
    """
    stores.check_study_name(name)
    if tracking_uri:
        stores.check_persistent(check_tracking_uri(tracking_uri), "--tracking-uri")
    storage_url = storage_url or locate_study(name)
    storage = open_storage(storage_url, must_exist=True)
    with failures.guard(failures.optuna_label(storage_url)):
        if name not in study_names(storage):
            raise ConfigError(f"no study named {name!r} in {storage_url}")
        peek = optuna.load_study(study_name=name, storage=storage)
        record = StudyRecord.of(peek)
        if record is None:
            raise ConfigError(f"study {name!r} was not created by tuner (no stored space)")
        space = parse_space(record.space)
        n_done = len(peek.get_trials(deepcopy=False, states=FINISHED))
        study = optuna.load_study(
            study_name=name,
            storage=storage,
            sampler=make_sampler(space, space.seed + n_done + seed_offset),
            pruner=make_pruner(space),
        )
    uri = tracking_uri or record.tracking_uri
    with contextlib.suppress(Exception):  # a read-only store is said when it is written
        relocate.follow_moves(uri)
    callback = storage.get_heartbeat_stale_trial_callback()
    if isinstance(callback, StaleTrialCallback):
        callback.tracking_uri = uri
    return StudyHandle(study, space, storage_url, uri, record.experiment_id, record.parent_run_id)


def run_study(
    handle: StudyHandle,
    n_trials: int | None = None,
    timeout: float | None = None,
    reporter: Reporter | None = None,
    fill: bool = True,
) -> None:
    """Run queued trials until the study holds `n_trials` counted trials (or `timeout` passes).

    With `fill` (create, resume) the queue is first topped up to the target. A worker
    (`fill=False`, no `n_trials`) drains whatever is queued; when the queue is empty while
    other workers' trials still run, it waits: one of them may die and need its retry.
    """
    space = handle.space
    reporter = reporter or NullReporter()
    target = n_trials or (space.n_trials if fill else None)
    label = failures.optuna_label(handle.storage_url)
    with failures.guard(label):
        if fill and target is not None:
            fill_queue(handle.study, space, target)
        if target is not None and handle.finished_count() >= target:
            return
    check_tracking(handle)  # before anything opens (and so creates) an MLflow store
    tracker = handle.tracker()
    reconcile(handle)  # runs a crash left RUNNING (or FINISHED for a lost trial) follow Optuna
    objective = TrialObjective(
        space, handle.name, tracker, handle.experiment_id, handle.parent_run_id, reporter, label
    )
    study = QueuedStudy.of(handle.study)

    def update_best(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        reporter.trial_finished(trial, study)
        if space.multi_objective or trial.state != optuna.trial.TrialState.COMPLETE:
            return
        best = study.best_trial
        if best.number == trial.number:
            record = TrialRecord.of(best)
            tracker.update_best(
                handle.parent_run_id, best.number, best.value, record.metrics, record.run_id
            )

    stopper = StudyStopper(space.terminate, reporter.note) if space.terminate else None
    tracker.reopen(handle.parent_run_id)
    try:
        with failures.guard(label):
            try:
                drain(
                    study,
                    objective,
                    [update_best, *([stopper] if stopper else [])],
                    timeout or space.timeout,
                    done=lambda: (
                        (stopper is not None and stopper.stopped)
                        or (target is not None and handle.finished_count() >= target)
                    ),
                    note=reporter.note,
                )
            except Exception:
                _raise_if_deleted(handle)
                raise
    except StoreError:  # said once, as one line: no second line about the parent run
        with contextlib.suppress(Exception):
            tracker.end(handle.parent_run_id, "KILLED")
        raise
    except BaseException:
        _end_parent(tracker, handle.parent_run_id, "KILLED")
        raise
    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        _end_parent(tracker, handle.parent_run_id, "FINISHED")  # the last worker out closes it


def check_tracking(handle: StudyHandle) -> None:
    """The study's MLflow store must hold its parent run: a store that moved without its
    study, or a --tracking-uri pointing elsewhere, is said as one line, never recreated
    empty."""
    from mlflow.exceptions import MlflowException

    db = stores.sqlite_path(handle.tracking_uri)
    if db is not None and not db.is_file():
        raise StoreError(
            f"{failures.mlflow_label(handle.tracking_uri)}: not found (study {handle.name!r} "
            "was tracked there; was it moved? pass --tracking-uri)"
        )
    try:
        handle.tracker().client.get_run(handle.parent_run_id)
    except MlflowException:
        raise ConfigError(
            f"--tracking-uri {stores.display(handle.tracking_uri)}: has no run "
            f"{handle.parent_run_id} of study {handle.name!r} (a different MLflow store?)"
        ) from None


def _raise_if_deleted(handle: StudyHandle) -> None:
    """A study deleted (`study delete --force`) while this process ran it: one line."""
    try:
        gone = handle.name not in study_names(study_storage(handle.study))
    except Exception:  # noqa: BLE001 - the storage itself failed: the caller says so
        return
    if gone:
        raise StoreError(f"study {handle.name!r} was deleted while it ran; stopped")


def _end_parent(tracker: Tracker, run_id: str, status: str) -> None:
    """End the study's MLflow run; a failure is said, never hidden, and never masks the
    outcome of the trials (which are safe in Optuna's storage)."""
    try:
        tracker.end(run_id, status)
    except Exception as err:  # noqa: BLE001 - reported below
        first = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        print(f"warning: could not end the study's MLflow run {run_id}: {first}", file=sys.stderr)


def delete_study(name: str, storage_url: str | None = None, force: bool = False) -> list[int]:
    """Move the study's MLflow experiment out of the way (soft delete, its name freed), then
    delete the Optuna study. If MLflow fails, nothing is deleted and the error says why.

    A study with RUNNING trials is refused: a worker may be on it. With `force` those trials
    are failed and their runs ended first (the worker then stops with one line); returns
    their numbers.
    """
    handle = load_study(name, storage_url)
    label = failures.optuna_label(handle.storage_url)
    with failures.guard(label):
        running = handle.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if running and not force:
        numbers = ", ".join(str(t.number) for t in running[:10])
        raise ConfigError(
            f"study {name!r} has {len(running)} running trial(s) ({numbers}): a worker may be "
            "on it; stop it first, or pass --force to fail those trials and delete anyway"
        )
    stopped: list[int] = []
    try:
        with failures.guard(label):  # no run is left RUNNING in the deleted experiment
            stopped = stop_running(handle, "study deleted while the trial ran")
        client = handle.tracker().client
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            # a deleted experiment keeps its name reserved; rename it so the name is free again
            client.rename_experiment(exp.experiment_id, f"{name}.deleted.{exp.experiment_id}")
            client.delete_experiment(exp.experiment_id)
    except StoreError as err:
        raise StoreError(f"study {name!r} not deleted: {err}") from None
    except Exception as err:  # noqa: BLE001 - any MLflow failure is reported as one line
        first = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise StoreError(
            f"study {name!r} not deleted: its MLflow experiment could not be removed ({first})"
        ) from None
    with failures.guard(label):
        optuna.delete_study(study_name=name, storage=open_storage(handle.storage_url))
    return stopped


def list_studies(storage_url: str | None = None) -> list[dict[str, Any]]:
    """One summary per study; without a URL, of both default storages. `trials` counts
    finished trials as `finished_count` does (a lost trial's retry stands for it)."""
    if storage_url:
        stores.check_persistent(storage_url, "--storage")
    local = stores.local_file(storage_url) if storage_url else None
    if local is not None and not local.is_file():
        return []
    urls = [storage_url] if storage_url else stores.default_storages()
    out = []
    for url in urls:
        with failures.guard(failures.optuna_label(url)):
            out.extend(_summaries(open_storage(url)))
    return out


def _name(choice: Any) -> str:
    """A space's sampler as written: `tpe`, or the name of `{name: tpe, ...}`."""
    return str(choice.get("name", "?") if isinstance(choice, dict) else choice)


def _summaries(storage: optuna.storages.BaseStorage) -> list[dict[str, Any]]:
    out = []
    for summary in storage.get_all_studies():
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        record = StudyRecord.of(summary)
        space = record.space if record else {}
        complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        best = study.best_value if complete and len(summary.directions) == 1 else None
        starts = [t.datetime_start for t in trials if t.datetime_start]
        try:  # a grid's target is its size, not the YAML's n_trials
            target: Any = parse_space(space).n_trials
        except ConfigError:
            target = space.get("n_trials")
        out.append(
            {
                "name": summary.study_name,
                "space": space.get("name", "?"),
                "sampler": _name(space.get("sampler", "?")),
                "trials": len(counted(trials)),
                "complete": len(complete),
                "target": target,
                "best": best,
                "created": min(starts) if starts else None,
            }
        )
    return out
