"""MLflow and Optuna agree on every trial's fate, whatever crashed in between.

A trial's MLflow run is ended just before Optuna is told its result, so a process killed in
between (or a store that failed at that moment) leaves the two disagreeing: a run RUNNING
whose trial is finished, or a run FINISHED whose trial was then failed as lost. Optuna is the
record of truth; `reconcile` (run whenever a study starts running: create, resume, worker)
brings MLflow in line. Deleting a study that still runs (`--force`) uses `stop_running`.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Protocol

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.records import INTERRUPTED, REASON, TrialRecord, superseded

if TYPE_CHECKING:
    from tuner.tracking import Tracker

LOST = "worker lost before it could report; retried"


class StudyStores(Protocol):
    """What reconciling needs of a study (tuner.study.StudyHandle has it)."""

    study: optuna.Study
    experiment_id: str

    @property
    def name(self) -> str: ...

    def tracker(self) -> Tracker: ...


def mlflow_status(trial: FrozenTrial) -> tuple[str, str]:
    """(MLflow status, tuner.state tag) mirroring a finished trial."""
    if trial.state == TrialState.COMPLETE:
        return "FINISHED", "COMPLETE"
    if trial.state == TrialState.PRUNED:
        return "KILLED", "PRUNED"
    reason = str(trial.user_attrs.get(REASON, ""))
    return ("KILLED" if reason == INTERRUPTED else "FAILED"), "FAIL"


def reconcile(handle: StudyStores) -> int:
    """Fail the trials whose worker is lost (retried once, tuner.heartbeat), then end the
    MLflow runs whose trial Optuna has finished, as Optuna says; returns how many runs
    changed. Trials still RUNNING are left alone (a live worker may own them)."""
    with warnings.catch_warnings():  # experimental in Optuna, and what tuner relies on
        warnings.simplefilter("ignore")
        optuna.storages.fail_stale_trials(handle.study)  # lost trials: failed and retried
    trials = handle.study.get_trials(deepcopy=False)
    finished = {t.number: t for t in trials if t.state.is_finished()}
    if not finished:
        return 0
    tracker = handle.tracker()
    changed = 0
    running = tracker.client.search_runs(
        [handle.experiment_id],
        filter_string=f"tags.`optuna.study` = '{handle.name}' and attributes.status = 'RUNNING' "
        "and tags.`tuner.kind` = 'trial'",
        max_results=10_000,
    )
    for run in running:
        number = run.data.tags.get("optuna.trial_number", "")
        trial = finished.get(int(number)) if number.isdigit() else None
        if trial is not None:
            _end(tracker, run.info.run_id, trial)
            changed += 1
    lost = superseded(trials)
    for number in lost & finished.keys():
        run_id = TrialRecord.of(finished[number]).run_id
        if not run_id:
            continue
        run = tracker.client.get_run(run_id)
        if run.info.status == "FINISHED" and run.data.tags.get("tuner.state") != "FAIL":
            _end(tracker, run_id, finished[number], LOST)
            changed += 1
    return changed


def _end(tracker: Tracker, run_id: str, trial: FrozenTrial, reason: str = "") -> None:
    from tuner.tracking import TrialRun

    status, state = mlflow_status(trial)
    reason = reason or str(trial.user_attrs.get(REASON, ""))
    TrialRun(tracker, run_id).finish(status, state, reason=reason)


def stop_running(handle: StudyStores, reason: str) -> list[int]:
    """Fail every RUNNING trial of the study with `reason`, then end every MLflow run of the
    study still RUNNING (trials KILLED with the reason, the parent run KILLED); returns the
    trials' numbers. (A worker still on one finds its trial finished and stops.)"""
    from optuna.exceptions import UpdateFinishedTrialError

    from tuner.optuna_compat import study_storage, trial_id
    from tuner.tracking import TrialRun

    storage = study_storage(handle.study)
    stopped = []
    for trial in handle.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        try:
            storage.set_trial_user_attr(trial_id(trial), REASON, reason)
            storage.set_trial_state_values(trial_id(trial), TrialState.FAIL)
        except UpdateFinishedTrialError:  # it finished meanwhile
            continue
        stopped.append(trial.number)
    tracker = handle.tracker()
    runs = tracker.client.search_runs(
        [handle.experiment_id],
        filter_string=f"tags.`optuna.study` = '{handle.name}' and attributes.status = 'RUNNING'",
        max_results=10_000,
    )
    for run in runs:
        if run.data.tags.get("tuner.kind") == "trial":
            TrialRun(tracker, run.info.run_id).finish("KILLED", "FAIL", reason=reason)
        else:
            tracker.end(run.info.run_id, "KILLED")
    return stopped
