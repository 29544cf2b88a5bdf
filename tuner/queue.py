"""The trial queue: a study's budget is its WAITING trials, and workers only pop from it.

`create` and `resume` fill the queue up to the target (grid points once each, or empty slots
whose params the sampler draws when popped); every process, one or many, runs queued trials
through `QueuedStudy`, whose `ask` pops atomically in every storage. So exactly `n_trials`
trials run and a grid is covered once, however many workers join.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from tuner.heartbeat import StaleTrialReaper, heartbeat_settings
from tuner.optuna_compat import QueuedStudy, QueueEmpty
from tuner.records import counted, pending
from tuner.space import SearchSpace

__all__ = ["QueueEmpty", "QueuedStudy", "drain", "fill_queue"]


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


def drain(
    study: QueuedStudy,
    objective: Callable,
    callbacks: list,
    timeout: float | None,
    done: Callable[[], bool],
    note: Callable[[str], None] | None = None,
) -> None:
    """Pop and run queued trials one at a time until `done()`, the deadline or an empty queue.

    While the queue is empty but other workers' trials still run, wait: one of them may be
    lost, and its retry (queued by a reaper after the grace period) needs a worker. A store
    that failed during a trial (`objective.failure`) stops the loop with that error, rather
    than failing every queued trial in turn.
    """
    deadline = time.monotonic() + timeout if timeout else None
    interval = heartbeat_settings()[0]
    poll = max(1, min(interval, 5))
    with StaleTrialReaper(study, interval) as reaper:
        while (deadline is None or time.monotonic() < deadline) and not done():
            try:  # optimize also fails stale trials (queueing their retries) before it pops
                study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=callbacks)
            except QueueEmpty:
                if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                    time.sleep(1)  # another worker's reaper may be between failing a lost
                    with reaper.settled():  # trial and queueing its retry; this one's too
                        if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
                            return
                    continue
                time.sleep(poll)
            except UpdateFinishedTrialError:  # a stalled worker's trial was failed meanwhile
                _stop_on_store_failure(objective)
                if note:
                    note("this worker's trial was failed as lost (no heartbeat); going on")
            except Exception:  # what Optuna says after a store failed is not the news
                _stop_on_store_failure(objective)
                raise
            _stop_on_store_failure(objective)


def _stop_on_store_failure(objective: Callable) -> None:
    failure = getattr(objective, "failure", None)
    if failure is not None:
        raise failure from None
