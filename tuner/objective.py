"""The one place that touches `optuna.Trial`: sample params -> RunConfig -> train -> report.

Failure is data: a diverged or pruned trial ends PRUNED with its reason, an out-of-memory or
any other exception ends it FAILED with the reason (and traceback in MLflow), and the study
goes on. Whatever happens, the trial's MLflow run is ended.
"""

from __future__ import annotations

import traceback as tb
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
from torch import nn

from tuner import metrics, records
from tuner.config import RunConfig
from tuner.data import TokenData, load_token_data
from tuner.progress import NullReporter, Reporter
from tuner.space import ParamSpec, SearchSpace
from tuner.tracking import Tracker
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

    def __post_init__(self) -> None:
        self.data = load_token_data(self.space.base.data, self.space.base.tokenizer)

    def config_for(self, trial: optuna.Trial) -> RunConfig:
        values = {p.name: suggest(trial, p) for p in self.space.params}
        config = self.space.apply(values)
        return config.replace("seed", trial_seed(self.space.seed, records.origin_number(trial)))

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        origin = records.write_origin(trial)
        try:
            config = self.config_for(trial)
        except Exception as err:  # an invalid sampled combination fails the trial, not the study
            records.write_reason(trial, f"{type(err).__name__}: {err}")
            raise
        records.write_config(trial, config)
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
            records.write_reason(trial, reason)
            run.finish("FAILED", "FAIL", reason=reason, traceback=tb.format_exc())
            raise
        except BaseException:  # Ctrl-C: the study stays resumable, the run is not left RUNNING
            records.write_reason(trial, records.INTERRUPTED)
            run.finish("KILLED", "FAIL", reason=records.INTERRUPTED)
            raise
