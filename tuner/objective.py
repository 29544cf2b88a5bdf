"""The one place that touches `optuna.Trial`: sample params -> RunConfig -> train -> report.

Failure is data: a diverged or pruned trial ends PRUNED with its reason, an out-of-memory or
any other exception ends it FAILED with the reason (and traceback in MLflow), and the study
goes on. Whatever happens, the trial's MLflow run is ended. A store that fails is not the
trial's fault: the trial ends FAIL "store failed: ..." (it does not count) and the study stops
with that one line (`failure`, read by tuner.queue).
"""

from __future__ import annotations

import contextlib
import traceback as tb
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
from torch import nn

from tuner import metrics, records
from tuner.config import RunConfig
from tuner.data import TokenData, load_token_data
from tuner.errors import StoreError
from tuner.failures import as_store_error, store_failure
from tuner.memory import WontFit
from tuner.progress import NullReporter, Reporter
from tuner.space import ParamSpec, SearchSpace
from tuner.tracking import Tracker, TrialRun
from tuner.train import Milestone, TrainResult, train_run


class TrialFailed(Exception):
    """A trial that cannot produce a value (out of memory)."""


def trial_seed(study_seed: int, number: int) -> int:
    """A trial's seed, from the study seed and the trial number."""
    return (study_seed * 1_000_003 + number) % 2**31


def suggest(trial: optuna.Trial, p: ParamSpec) -> Any:
    if p.kind == "categorical":
        return trial.suggest_categorical(p.name, list(p.choices))
    if p.kind == "int":
        return trial.suggest_int(p.name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
    return trial.suggest_float(p.name, float(p.low), float(p.high), step=p.step, log=p.log)


def task_hook(config: RunConfig, data: TokenData) -> Callable[[nn.Module, bool], dict] | None:
    """The downstream tasks of `config.eval`, run at the last milestone (or every one) on the
    validation split; None when there are none."""
    if not config.eval.tasks:
        return None
    from tuner.tasks import run_tasks

    def run(model: nn.Module, last: bool) -> dict[str, float]:
        if not (last or config.eval.every_milestone):
            return {}
        return run_tasks(config, model, data, split="val").flat()

    return run


def metric_value(result: TrainResult, metric: str) -> float:
    source = result.cost if metrics.get(metric).source == "cost" else result.metrics
    return float(source[metric])


@dataclass
class TrialObjective:
    """The callable handed to `study.optimize`: one trial, trained and tracked."""

    space: SearchSpace
    study_name: str
    tracker: Tracker
    experiment_id: str
    parent_run_id: str
    reporter: Reporter = field(default_factory=NullReporter)
    storage_label: str = "Optuna storage"
    """Names the Optuna storage in a one-line store failure."""
    failure: StoreError | None = field(default=None, init=False)
    """Set when a store failed during a trial: the study stops after it (tuner.queue)."""

    def __post_init__(self) -> None:
        self.data = load_token_data(self.space.base.data, self.space.base.tokenizer)

    def config_for(self, trial: optuna.Trial) -> RunConfig:
        values = {p.name: suggest(trial, p) for p in self.space.params}
        config = self.space.apply(values)
        return config.replace("seed", trial_seed(self.space.seed, records.origin_number(trial)))

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        try:
            return self._run(trial)
        except BaseException as err:
            failure = as_store_error(err, self.storage_label)
            if failure is None or isinstance(err, KeyboardInterrupt):
                raise
            # a store failed: this trial does not count, and the study stops (queue.drain)
            self.failure = failure
            with contextlib.suppress(Exception):
                records.write_reason(trial, f"{records.STORE_FAILED}: {failure}")
            raise failure from None

    def _run(self, trial: optuna.Trial) -> float | list[float]:
        origin = records.write_origin(trial)
        try:
            config = self.config_for(trial)
        except Exception as err:  # an invalid sampled combination fails the trial, not the study
            records.write_reason(trial, f"{type(err).__name__}: {err}")
            raise
        records.write_config(trial, config)
        try:
            run = self.tracker.start_trial(
                self.experiment_id,
                self.parent_run_id,
                self.study_name,
                trial.number,
                self.space.sampler,
                config,
                trial.params,
                data=self.data,
            )
        except Exception as err:  # a failed trial always says why, whatever failed
            if store_failure(err) is None:
                records.write_reason(trial, f"MLflow run not started: {type(err).__name__}: {err}")
            raise
        records.write_run_id(trial, run.run_id)
        if origin != trial.number:
            self.tracker.client.set_tag(run.run_id, "tuner.retry_of", str(origin))
        single = not self.space.multi_objective
        primary = self.space.objectives[0].metric
        prunable = single and metrics.get(primary).source == "metrics"

        def on_milestone(m: Milestone) -> bool:
            run.log_milestone(m)
            if prunable and primary in m.metrics:  # a task metric may be last-milestone only
                trial.report(m.metrics[primary], step=m.index)
                return trial.should_prune()
            return False

        try:
            self.reporter.trial_started(trial.number, trial.params, config.train.tokens)
            result = train_run(
                config,
                self.data,
                on_milestone=on_milestone,
                on_progress=self.reporter.progress,
                extra_eval=task_hook(config, self.data),
            )
            records.write_result(trial, result)
            if result.status in ("diverged", "pruned"):
                self._finish(run, "KILLED", "PRUNED", result, reason=result.reason)
                raise optuna.TrialPruned(result.reason)
            if result.status == "oom":
                self._finish(run, "FAILED", "FAIL", result, reason=result.reason)
                raise TrialFailed(result.reason)
            values = [metric_value(result, o.metric) for o in self.space.objectives]
            self._finish(run, "FINISHED", "COMPLETE", result)
            return values[0] if single else values
        except (optuna.TrialPruned, TrialFailed):
            raise
        except WontFit as err:  # the memory estimate said no before anything was allocated
            self._stop(trial, run, "FAILED", str(err))
            raise TrialFailed(str(err)) from None
        except Exception as err:
            if store_failure(err) is not None:  # the store's fault, not the trial's
                reason = f"{records.STORE_FAILED}: {as_store_error(err, self.storage_label)}"
                self._stop(trial, run, "FAILED", reason)
                raise
            reason = f"{type(err).__name__}: {err}"
            self._stop(trial, run, "FAILED", reason, traceback=tb.format_exc())
            raise
        except BaseException:  # Ctrl-C, SIGTERM: the study stays resumable, no run left RUNNING
            self._stop(trial, run, "KILLED", records.INTERRUPTED)
            raise

    def _stop(
        self, trial: optuna.Trial, run: TrialRun, status: str, reason: str, traceback: str = ""
    ) -> None:
        """Record why the trial stopped in Optuna, then end its run; each step is tried even
        if the other's store is failing (the error being handled is what the user sees)."""
        with contextlib.suppress(Exception):
            records.write_reason(trial, reason)
        with contextlib.suppress(Exception):
            run.finish(status, "FAIL", reason=reason, traceback=traceback)

    def _finish(self, run: TrialRun, *args: Any, **kwargs: Any) -> None:
        """End the run of a trial that has its result. If MLflow fails now, the result still
        reaches Optuna, the study stops after this trial, and the next start of the study
        ends the run as Optuna says (tuner.reconcile)."""
        try:
            run.finish(*args, **kwargs)
        except Exception as err:
            failure = as_store_error(err, self.storage_label)
            if failure is None:
                raise
            self.failure = failure
