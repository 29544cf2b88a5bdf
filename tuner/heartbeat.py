"""Lost workers: heartbeats for every storage, and one retry of a trial whose worker died.

RDB storages beat natively; the journal storage gets the same heartbeat here. A trial silent
for the grace period is failed by Optuna's `fail_stale_trials` (run before every trial, and by
a background reaper in every worker), its MLflow run is ended FAILED, and it is retried once
with the same params and seed.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import BaseJournalBackend
from optuna.trial import FrozenTrial, TrialState

from tuner.errors import ConfigError
from tuner.optuna_compat import HeartbeatJournalStorage, trial_id
from tuner.quiet import experimental_ok
from tuner.records import StudyRecord

HEARTBEAT_ATTR = "tuner:heartbeat"
StaleCallback = Callable[[optuna.Study, FrozenTrial], None]
MAX_RETRY = 1


def heartbeat_settings() -> tuple[int, int]:
    """(interval, grace period) in seconds, from TUNER_HEARTBEAT_INTERVAL / TUNER_GRACE_PERIOD.

    Defaults are a beat every 30 s and a grace period of 120 s: four missed beats, so a slow
    beat on a busy machine is not taken for a dead worker. Tests use seconds.
    """
    interval = _env_int("TUNER_HEARTBEAT_INTERVAL", 30)
    grace = _env_int("TUNER_GRACE_PERIOD", max(120, 2 * interval))
    if grace <= interval:
        raise ConfigError(
            f"TUNER_GRACE_PERIOD={grace} must be longer than TUNER_HEARTBEAT_INTERVAL={interval}"
        )
    return interval, grace


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{name}={raw!r}: expected a whole number of seconds >= 1")
    return int(raw)


class JournalHeartbeatStorage(HeartbeatJournalStorage):
    """Optuna's journal storage plus the heartbeat that `RDBStorage` has built in.

    Optuna gives journals no heartbeat, so a killed worker's trial would stay RUNNING
    forever. Here a beat is a trial system attribute holding the wall-clock time.
    """

    def __init__(
        self,
        backend: BaseJournalBackend,
        heartbeat_interval: int,
        grace_period: int,
        stale_trial_callback: StaleCallback | None = None,
    ):
        super().__init__(backend)
        self._heartbeat_interval = heartbeat_interval
        self._grace_period = grace_period
        self._stale_trial_callback = stale_trial_callback

    def record_heartbeat(self, trial_id: int) -> None:
        # the trial may have been failed as stale meanwhile (a stalled, not dead, worker)
        with contextlib.suppress(UpdateFinishedTrialError, KeyError):
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

    def stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        return [
            trial_id(t)
            for t in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
            if now - _last_beat(t) > self._grace_period
        ]

    def get_heartbeat_interval(self) -> int | None:
        return self._heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> StaleCallback | None:
        return self._stale_trial_callback


def _last_beat(trial: FrozenTrial) -> float:
    """Latest sign of life; a retry copies the lost trial's old beat, so its start counts too."""
    beats = [trial.system_attrs.get(HEARTBEAT_ATTR, 0.0)]
    if trial.datetime_start is not None:
        beats.append(trial.datetime_start.timestamp())
    return max(beats)


class StaleTrialCallback:
    """Called once per trial whose worker stopped beating (the trial is already FAIL).

    Enqueues one retry with the same params, then closes the trial's MLflow run as FAILED, so
    the UI shows no run RUNNING forever. The retry comes first: a worker that finds the queue
    empty and nothing running leaves, and closing the run (an MLflow query) can take seconds.
    `tracking_uri` is set when a worker loads the study (it may override the stored one);
    until then the study's stored URI is used.
    """

    def __init__(self, max_retry: int = MAX_RETRY):
        self.tracking_uri: str | None = None
        with experimental_ok():
            self._retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._retry(study, trial)
        try:
            close_lost_runs(study, trial, self.tracking_uri)
        except Exception as err:  # noqa: BLE001 - MLflow trouble is a warning, not a stop
            print(
                f"warning: trial {trial.number}: could not close its MLflow run ({err})",
                file=sys.stderr,
                flush=True,
            )


def close_lost_runs(study: optuna.Study, trial: FrozenTrial, tracking_uri: str | None) -> None:
    """End every MLflow run of `trial` still RUNNING as FAILED, with the reason."""
    from tuner.tracking import Tracker, TrialRun  # MLflow only when a trial was lost

    attrs = StudyRecord.of(study)
    if attrs is None:
        return
    uri = tracking_uri or attrs.tracking_uri
    tracker = Tracker(uri)
    runs = tracker.client.search_runs(
        [attrs.experiment_id],
        filter_string=f"tags.`optuna.trial_number` = '{trial.number}' "
        f"and tags.`optuna.study` = '{study.study_name}' "
        "and attributes.status = 'RUNNING'",
    )
    _, grace = heartbeat_settings()
    for run in runs:
        TrialRun(tracker, run.info.run_id).finish(
            "FAILED", "FAIL", reason=f"worker lost: no heartbeat for {grace} s; retried"
        )


class StaleTrialReaper:
    """Fails lost trials every heartbeat interval from a background thread.

    Optuna looks for them only before a worker starts its next trial, which may be hours
    away; a reaper in every worker bounds the wait to grace period + one interval. Storages
    let one caller win each failing, so several reapers run each retry callback once.
    """

    def __init__(self, study: optuna.Study, interval: float):
        self.study = study
        self.interval = interval
        self._stop = threading.Event()
        self._pass = threading.Lock()  # held while a pass fails lost trials and queues retries
        self._thread = threading.Thread(target=self._loop, name="stale-trial-reaper", daemon=True)

    def settled(self) -> threading.Lock:
        """Held, no pass is in flight: a trial it failed has its retry queued by then."""
        return self._pass

    def __enter__(self) -> StaleTrialReaper:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with self._pass, experimental_ok():
                    optuna.storages.fail_stale_trials(self.study)
            except Exception as err:  # noqa: BLE001 - a storage hiccup; try again next beat
                print(
                    f"warning: looking for lost trials failed ({type(err).__name__}: {err})",
                    file=sys.stderr,
                    flush=True,
                )
