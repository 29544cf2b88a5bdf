"""The one place that touches `optuna.Trial`: sample params -> RunConfig -> train -> report.

Failure is data: a diverged or pruned trial ends PRUNED with its reason, an out-of-memory or
any other exception ends it FAILED with the reason (and traceback in MLflow), and the study
goes on. Whatever happens, the trial's MLflow run is ended.
"""

from __future__ import annotations

import traceback as tb
from dataclasses import dataclass
from typing import Any, Protocol

import optuna

from tuner.config import RunConfig
from tuner.data import load_token_data
from tuner.space import TRIAL_METRICS, ParamSpec, SearchSpace
from tuner.tracking import Tracker
from tuner.train import Milestone, TrainResult, train_run


class Reporter(Protocol):
    """What the CLI shows while a study runs; `NullReporter` shows nothing."""

    def trial_started(self, number: int, params: dict[str, Any], total_tokens: int) -> None: ...
    def progress(self, tokens: int, total: int) -> None: ...
    def trial_finished(self, trial: optuna.trial.FrozenTrial, study: optuna.Study) -> None: ...


class NullReporter:
    def trial_started(self, number: int, params: dict[str, Any], total_tokens: int) -> None:
        pass

    def progress(self, tokens: int, total: int) -> None:
        pass

    def trial_finished(self, trial: optuna.trial.FrozenTrial, study: optuna.Study) -> None:
        pass


class TrialFailed(Exception):
    """A trial that cannot produce a value (out of memory, invalid sampled config)."""


def trial_seed(study_seed: int, number: int) -> int:
    """A trial's seed, from the study seed and the trial number."""
    return (study_seed * 1_000_003 + number) % 2**31


ORIGIN_ATTR = "origin_trial"


def origin_number(trial: optuna.Trial) -> int:
    """The number whose seed a trial uses: its own, or, for the retry of a lost trial, the lost
    trial's (a retry copies the lost trial's user attributes), so the retry reruns it exactly."""
    return int(trial.user_attrs.get(ORIGIN_ATTR, trial.number))


def suggest(trial: optuna.Trial, p: ParamSpec) -> Any:
    if p.kind == "categorical":
        return trial.suggest_categorical(p.name, list(p.choices))
    if p.kind == "int":
        return trial.suggest_int(p.name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
    return trial.suggest_float(p.name, float(p.low), float(p.high), step=p.step, log=p.log)


def metric_value(result: TrainResult, metric: str) -> float:
    source = result.metrics if metric in TRIAL_METRICS else result.cost
    return float(source[metric])


@dataclass
class Objective:
    """Callable handed to `study.optimize`."""

    space: SearchSpace
    study_name: str
    tracker: Tracker
    experiment_id: str
    parent_run_id: str
    reporter: Any = None

    def __post_init__(self) -> None:
        self.reporter = self.reporter or NullReporter()
        self.data = load_token_data(self.space.base.data, self.space.base.tokenizer)

    def config_for(self, trial: optuna.Trial) -> RunConfig:
        values = {p.name: suggest(trial, p) for p in self.space.params}
        config = self.space.apply(values)
        return config.replace("seed", trial_seed(self.space.seed, origin_number(trial)))

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        trial.set_user_attr(ORIGIN_ATTR, origin_number(trial))
        try:
            config = self.config_for(trial)
        except Exception as err:  # an invalid sampled combination fails the trial, not the study
            trial.set_user_attr("reason", f"{type(err).__name__}: {err}"[:2000])
            raise
        trial.set_user_attr("config", config.to_dict())
        run = self.tracker.start_trial(
            self.experiment_id,
            self.parent_run_id,
            self.study_name,
            trial.number,
            self.space.sampler,
            config,
            trial.params,
        )
        trial.set_user_attr("mlflow_run_id", run.run_id)
        if origin_number(trial) != trial.number:
            self.tracker.client.set_tag(run.run_id, "tuner.retry_of", str(origin_number(trial)))
        single = not self.space.multi_objective
        primary = self.space.objectives[0].metric

        def on_milestone(m: Milestone) -> bool:
            run.log_milestone(m)
            if single and primary in TRIAL_METRICS:
                trial.report(m.metrics[primary], step=m.index)
                return trial.should_prune()
            return False

        try:
            self.reporter.trial_started(trial.number, trial.params, config.train.tokens)
            result = train_run(
                config, self.data, on_milestone=on_milestone, on_progress=self.reporter.progress
            )
            self._record(trial, result)
            if result.status in ("diverged", "pruned"):
                run.finish("KILLED", "PRUNED", result, reason=result.reason)
                raise optuna.TrialPruned(result.reason)
            if result.status == "oom":
                run.finish("FAILED", "FAIL", result, reason=result.reason)
                raise TrialFailed(result.reason)
            values = [metric_value(result, o.metric) for o in self.space.objectives]
            run.finish("FINISHED", "COMPLETE", result)
            return values[0] if single else values
        except (optuna.TrialPruned, TrialFailed):
            raise
        except Exception as err:
            reason = f"{type(err).__name__}: {err}"
            trial.set_user_attr("reason", reason[:2000])
            run.finish("FAILED", "FAIL", reason=reason, traceback=tb.format_exc())
            raise
        except BaseException:  # Ctrl-C: the study stays resumable, the run is not left RUNNING
            trial.set_user_attr("reason", "interrupted")
            run.finish("KILLED", "FAIL", reason="interrupted")
            raise

    @staticmethod
    def _record(trial: optuna.Trial, result: TrainResult) -> None:
        trial.set_user_attr("metrics", result.metrics)
        trial.set_user_attr("cost", result.cost)
        curve = [[m.tokens_seen, m.metrics["val_loss"]] for m in result.history]
        trial.set_user_attr("curve", curve)
        if result.reason:
            trial.set_user_attr("reason", result.reason)
