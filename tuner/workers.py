"""Many workers on one study: heartbeats, retries of lost trials, the trial queue, local workers.

The study's budget is its queue of WAITING trials: grid points or empty slots are enqueued
when a study is created (or resumed with a higher target), and a worker only ever pops a
queued trial, never asks the sampler for a fresh one. Popping is atomic in every Optuna
storage, so K workers run exactly the requested trials and no grid point twice.

A worker that dies leaves its trial RUNNING with a heartbeat that stops. After the grace
period any live worker marks it FAIL, closes its MLflow run as FAILED and enqueues one retry
with the same params (and the same seed). The lost trial is then "superseded": it stays in
the study as a record but does not count toward the target; its retry does.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import JournalStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat  # no public name; RDBStorage uses it too
from optuna.storages.journal import BaseJournalBackend
from optuna.trial import FrozenTrial, TrialState

from tuner.config import ConfigError

HEARTBEAT_ATTR = "tuner:heartbeat"
StaleCallback = Callable[[optuna.Study, FrozenTrial], None]
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
PENDING = (TrialState.WAITING, TrialState.RUNNING)
MAX_RETRY = 1


# ---------------------------------------------------------------- heartbeat settings


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


# ---------------------------------------------------------------- journal storage with heartbeat


class JournalHeartbeatStorage(JournalStorage, BaseHeartbeat):
    """Optuna's journal storage plus the heartbeat that `RDBStorage` has built in.

    Optuna 5 gives journals no heartbeat, so a killed worker's trial would stay RUNNING
    forever. Here a beat is a trial system attribute holding the wall-clock time; Optuna's own
    `fail_stale_trials` (run before every trial) then treats both storages alike.
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

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        return [
            t._trial_id
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


# ---------------------------------------------------------------- lost trials


class StaleTrialCallback:
    """Called once per trial whose worker stopped beating (the trial is already FAIL).

    Closes the trial's MLflow run as FAILED, so the UI shows no run RUNNING forever, then
    enqueues one retry with the same params. `tracking_uri` is set when a worker loads the
    study (it may override the stored one); until then the study's stored URI is used.
    """

    def __init__(self, max_retry: int = MAX_RETRY):
        self.tracking_uri: str | None = None
        self._retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        try:
            close_lost_runs(study, trial, self.tracking_uri)
        except Exception as err:  # noqa: BLE001 - MLflow trouble must not stop the retry
            print(
                f"warning: trial {trial.number}: could not close its MLflow run ({err})",
                file=sys.stderr,
                flush=True,
            )
        self._retry(study, trial)


def close_lost_runs(study: optuna.Study, trial: FrozenTrial, tracking_uri: str | None) -> None:
    """End every MLflow run of `trial` still RUNNING as FAILED, with the reason."""
    from tuner.tracking import Tracker, TrialRun

    attrs = study.user_attrs.get("tuner", {})
    uri = tracking_uri or attrs.get("tracking_uri")
    if not uri or "experiment_id" not in attrs:
        return
    tracker = serialized(Tracker(uri))
    runs = tracker.client.search_runs(
        [attrs["experiment_id"]],
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
        self._thread = threading.Thread(target=self._loop, name="stale-trial-reaper", daemon=True)

    def __enter__(self) -> StaleTrialReaper:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                optuna.storages.fail_stale_trials(self.study)
            except Exception as err:  # noqa: BLE001 - a storage hiccup; try again next beat
                print(
                    f"warning: looking for lost trials failed ({type(err).__name__}: {err})",
                    file=sys.stderr,
                    flush=True,
                )


def superseded(trials: Iterable[FrozenTrial]) -> set[int]:
    """Numbers of lost trials that have a retry: records, not results."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", [])}


def counted(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """Finished trials that count toward the target: a lost trial counts through its retry,
    and a trial stopped by Ctrl-C not at all (resume runs another in its place)."""
    lost = superseded(trials)
    return [
        t
        for t in trials
        if t.state in FINISHED
        and t.number not in lost
        and t.user_attrs.get("reason") != "interrupted"
    ]


def pending(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """Queued or running trials: each will end as one counted trial (itself or its retry)."""
    return [t for t in trials if t.state in PENDING]


# ---------------------------------------------------------------- the queue


class QueueEmpty(Exception):
    """No queued trial is left to pop."""


class QueuedStudy(optuna.Study):
    """A study whose `ask` pops a queued trial or raises `QueueEmpty`, never creating a fresh
    one: with K workers, a check-then-ask would race and run extra trials or, with the grid
    sampler, a duplicate grid point."""

    @classmethod
    def of(cls, study: optuna.Study) -> QueuedStudy:
        return cls(
            study_name=study.study_name,
            storage=study._storage,
            sampler=study.sampler,
            pruner=study.pruner,
        )

    def ask(self, fixed_distributions: dict | None = None) -> optuna.Trial:
        if fixed_distributions:
            raise ValueError("QueuedStudy.ask takes no fixed distributions")
        self._thread_local.cached_all_trials = None  # see every trial the others added
        trial_id = self._pop_waiting_trial_id()
        if trial_id is None:
            raise QueueEmpty
        return optuna.Trial(self, trial_id)


def drain(
    study: QueuedStudy,
    objective: Callable,
    callbacks: list,
    timeout: float | None,
    done: Callable[[], bool],
) -> None:
    """Pop and run queued trials one at a time until `done()`, the deadline or an empty queue.

    While the queue is empty but other workers' trials still run, wait: one of them may be
    lost, and its retry (queued by a reaper after the grace period) needs a worker.
    """
    deadline = time.monotonic() + timeout if timeout else None
    interval = heartbeat_settings()[0]
    poll = max(1, min(interval, 5))
    with StaleTrialReaper(study, interval):
        while (deadline is None or time.monotonic() < deadline) and not done():
            try:  # optimize also fails stale trials (queueing their retries) before it pops
                study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=callbacks)
            except QueueEmpty:
                if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                    return
                time.sleep(poll)
            except UpdateFinishedTrialError:  # a stalled worker's trial was failed meanwhile
                note = getattr(getattr(objective, "reporter", None), "note", None)
                if note:
                    note("this worker's trial was failed as lost (no heartbeat); going on")


# ---------------------------------------------------------------- MLflow on SQLite


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


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def serialized(tracker: Any) -> Any:
    """`tracker` with its client serialized across processes when the store is SQLite."""
    uri = tracker.uri
    if uri.startswith("sqlite:///") and not isinstance(tracker.client, SerializedClient):
        db = Path(uri[len("sqlite:///") :])
        tracker.client = SerializedClient(tracker.client, db.with_name(db.name + ".lock"))
    return tracker


# ---------------------------------------------------------------- worker output


class LineReporter:
    """One line per trial start and end, prefixed with the worker: K workers share a terminal,
    where progress bars would garble each other."""

    def __init__(self, tag: str | None = None, stream: Any = None):
        self.tag = tag or f"{socket.gethostname()}:{os.getpid()}"
        self.stream = stream or sys.stderr

    def _print(self, text: str) -> None:
        now = time.strftime("%H:%M:%S")
        self.stream.write(f"[{self.tag} {now}] {text}\n")  # one write: K workers' lines don't mix
        self.stream.flush()

    def trial_started(self, number: int, params: dict[str, Any], total_tokens: int) -> None:
        shown = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
        )
        self._print(f"trial {number} started: {shown}")

    def progress(self, tokens: int, total: int) -> None:
        pass

    def trial_finished(self, trial: FrozenTrial, study: optuna.Study) -> None:
        metrics = trial.user_attrs.get("metrics", {})
        loss = f" val_loss {metrics['val_loss']:.4f}" if "val_loss" in metrics else ""
        reason = trial.user_attrs.get("reason", "")
        self._print(
            f"trial {trial.number} {trial.state.name}{loss}"
            + (f" ({reason[:120]})" if reason else "")
        )

    def note(self, text: str) -> None:
        self._print(text)


# ---------------------------------------------------------------- local worker processes


def worker_command(
    name: str, storage_url: str, tracking_uri: str, timeout: float | None = None
) -> list[str]:
    """`tuner study worker ...` run with this interpreter (works without the console script)."""
    cmd = [
        sys.executable,
        "-m",
        "tuner.workers",
        "study",
        "worker",
        name,
        "--storage",
        storage_url,
        "--tracking-uri",
        tracking_uri,
    ]
    return cmd + (["--timeout", str(timeout)] if timeout else [])


def start_workers(
    name: str, storage_url: str, tracking_uri: str, n_workers: int, timeout: float | None = None
) -> list[subprocess.Popen]:
    """Start `n_workers` worker processes; each gets an equal share of the CPU threads."""
    env = dict(os.environ)
    threads = str(max(1, (os.cpu_count() or 1) // n_workers))
    env.setdefault("OMP_NUM_THREADS", threads)
    env.setdefault("MKL_NUM_THREADS", threads)
    cmd = worker_command(name, storage_url, tracking_uri, timeout)
    return [subprocess.Popen(cmd, env=env) for _ in range(n_workers)]


def wait_workers(procs: list[subprocess.Popen], grace_s: float = 30.0) -> list[int]:
    """Wait for every worker; on Ctrl-C interrupt them (their trials end KILLED in MLflow),
    then kill any still alive after `grace_s`. Returns the exit codes."""
    try:
        return [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        deadline = time.monotonic() + grace_s
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        raise


if __name__ == "__main__":  # `python -m tuner.workers ARGS` is `tuner ARGS`
    from tuner.cli import app

    app(prog_name="tuner")
