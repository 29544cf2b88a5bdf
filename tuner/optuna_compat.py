"""The only module that touches Optuna's private names; tests/test_optuna_compat.py checks
every one of them against the installed Optuna, so an upgrade that moves one fails loudly
there instead of silently running extra trials or repeating grid points.

What tuner needs and Optuna does not offer publicly:
- a heartbeat for the journal storage (`BaseHeartbeat`, and `fail_stale_trials` asking a
  storage for `_get_stale_trial_ids`);
- a study whose `ask` only pops queued trials (`Study._pop_waiting_trial_id`, the per-thread
  trial cache, and `optimize` creating its trials through `ask`);
- the whole study behind the one-bracket view that `HyperbandPruner` hands a sampler
  (`_BracketStudy._study`).
"""

from __future__ import annotations

import abc

import optuna
from optuna.storages import BaseStorage
from optuna.storages._heartbeat import BaseHeartbeat  # private: no public base class
from optuna.storages.journal import BaseJournalBackend, JournalStorage
from optuna.trial import FrozenTrial

QMC_SAMPLES_CATEGORICALS = int(optuna.__version__.split(".")[0]) >= 5
"""Optuna 5's QMCSampler draws categoricals from its sequence; 4.x samples them on their own
and fails with one in its relative search space (public API, behaviour by version)."""


def trial_id(trial: FrozenTrial) -> int:
    """The storage's id of a trial (not its number)."""
    return trial._trial_id


def study_storage(study: optuna.Study) -> BaseStorage:
    return study._storage


def whole_study(study: optuna.Study) -> optuna.Study:
    """The study itself, also where Optuna gives a sampler one Hyperband bracket's view of it
    (whose `get_trials` lists that bracket's trials only)."""
    return getattr(study, "_study", study)


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """A journal storage that Optuna's `fail_stale_trials` treats like a heartbeat RDB.

    Subclasses implement the public-named `stale_trial_ids`; Optuna calls the private hook.
    """

    def __init__(self, backend: BaseJournalBackend):
        super().__init__(backend)

    @abc.abstractmethod
    def stale_trial_ids(self, study_id: int) -> list[int]:
        """Ids of RUNNING trials whose worker stopped beating."""

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:  # Optuna's hook
        return self.stale_trial_ids(study_id)


class QueueEmpty(Exception):
    """No queued trial is left to pop."""


class QueuedStudy(optuna.Study):
    """A study whose `ask` pops a queued trial or raises `QueueEmpty`, never creating a fresh
    one: with K workers, a check-then-ask would race and run extra trials or, with the grid
    sampler, a duplicate grid point. `optimize` creates every trial through `ask`."""

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
        popped = self._pop_waiting_trial_id()
        if popped is None:
            raise QueueEmpty
        return optuna.Trial(self, popped)
