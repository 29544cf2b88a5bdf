"""The rows of `tuner study show`: one per trial that ran or runs, best marked."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import optuna

from tuner.records import TrialRecord, retried_as

if TYPE_CHECKING:
    from tuner.study import StudyHandle


def trial_rows(handle: StudyHandle) -> list[dict[str, Any]]:
    """One row per trial that ran or runs (queued slots are left out), best trial(s) marked;
    a lost trial's reason names its retry."""
    study = handle.study
    trials = study.get_trials(deepcopy=False)
    complete = any(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    best_numbers = {t.number for t in study.best_trials} if complete else set()
    retries = retried_as(trials)
    rows = []
    for t in trials:
        if t.state == optuna.trial.TrialState.WAITING:
            continue
        record = TrialRecord.of(t)
        reason = record.reason
        if t.number in retries:
            reason = f"worker lost; retried as trial {retries[t.number]}"
        rows.append(
            {
                "number": t.number,
                "state": record.state,
                "params": record.params,
                "val_loss": record.metrics.get("val_loss"),
                "val_perplexity": record.metrics.get("val_perplexity"),
                "val_bpb": record.metrics.get("val_bpb"),
                "n_params": record.cost.get("n_params"),
                "train_flops": record.cost.get("train_flops"),
                "duration": record.duration,
                "reason": reason,
                "best": t.number in best_numbers,
                "mlflow_run_id": record.run_id,
            }
        )
    return rows
