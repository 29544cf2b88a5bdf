"""Contract tests for the Optuna private names tuner relies on (tuner.optuna_compat).

If an Optuna release moves any of them, these fail loudly instead of a study silently running
extra trials or repeating grid points. They run on in-memory or temporary storages.
"""

from __future__ import annotations

import time

import optuna
import pytest
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from tuner import optuna_compat
from tuner.heartbeat import JournalHeartbeatStorage
from tuner.optuna_compat import QueuedStudy, QueueEmpty, study_storage, trial_id, whole_study
from tuner.quiet import experimental_ok


def test_the_private_names_exist():
    from optuna.storages._heartbeat import BaseHeartbeat

    assert callable(getattr(BaseHeartbeat, "_get_stale_trial_ids", None))
    assert callable(getattr(optuna.Study, "_pop_waiting_trial_id", None))
    study = optuna.create_study()
    assert hasattr(study, "_storage") and hasattr(study, "_study_id")
    assert hasattr(study._thread_local, "cached_all_trials")
    study.enqueue_trial({})
    frozen = study.get_trials()[0]
    assert isinstance(trial_id(frozen), int)
    assert study_storage(study) is study._storage


def test_whole_study_behind_a_hyperband_bracket_view():
    study = optuna.create_study(pruner=optuna.pruners.HyperbandPruner(1, 9, 3))

    def objective(trial: optuna.Trial) -> float:
        trial.report(1.0, 1)
        trial.should_prune()  # sets the pruner's brackets up
        return 1.0

    study.optimize(objective, n_trials=30)
    views = [optuna.pruners._filter_study(study, t) for t in study.trials]
    assert min(len(v.get_trials()) for v in views) < 30  # a view lists one bracket only
    view = views[-1]
    assert view is not study
    assert whole_study(view) is study
    assert whole_study(study) is study


def test_optimize_pops_queued_trials_through_ask_and_never_creates_one():
    study = QueuedStudy.of(optuna.create_study())
    for x in (1.0, 2.0):
        study.enqueue_trial({"x": x})
    seen = []

    def objective(trial):
        seen.append(trial.suggest_float("x", 0, 3))
        return seen[-1]

    study.optimize(objective, n_trials=2)
    assert seen == [1.0, 2.0]
    with pytest.raises(QueueEmpty):  # a third trial would have to be created: it is not
        study.optimize(objective, n_trials=1)
    assert len(study.get_trials()) == 2
    assert all(t.state == TrialState.COMPLETE for t in study.get_trials())


def test_a_popped_trial_is_not_popped_again_by_a_second_study_object():
    base = optuna.create_study()
    base.enqueue_trial({})
    first, second = QueuedStudy.of(base), QueuedStudy.of(base)
    trial = first.ask()
    with pytest.raises(QueueEmpty):
        second.ask()
    assert trial.number == 0


def test_fail_stale_trials_uses_the_journal_heartbeat_and_retries_once(tmp_path):
    calls = []

    def callback(study, trial):
        calls.append(trial.number)
        with experimental_ok():
            RetryHeartbeatStaleTrialCallback(max_retry=1)(study, trial)

    storage = JournalHeartbeatStorage(
        JournalFileBackend(str(tmp_path / "journal.log")), 1, 1, callback
    )
    study = optuna.create_study(storage=storage)
    study.enqueue_trial({"x": 1.0})
    running = QueuedStudy.of(study).ask()
    running.suggest_float("x", 0, 2)
    assert isinstance(storage, optuna_compat.HeartbeatJournalStorage)
    frozen = study.get_trials()[0]
    storage.record_heartbeat(trial_id(frozen))
    assert storage.stale_trial_ids(study._study_id) == []  # it beats
    time.sleep(1.5)  # silent for longer than the grace period
    assert storage.stale_trial_ids(study._study_id) == [trial_id(frozen)]
    with experimental_ok():
        optuna.storages.fail_stale_trials(study)
    trials = study.get_trials()
    assert calls == [0]
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[1].system_attrs["retry_history"] == [0]
    assert trials[1].params == {"x": 1.0} or trials[1].system_attrs.get("fixed_params")
