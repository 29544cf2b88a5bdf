"""One registry of what tuner measures: name, label, direction and where a trial keeps it.

Every reader (objectives, export, `study show`, MLflow, dashboards, progress) looks metrics
up here, so a metric is named, labelled and ranked the same way everywhere. Evaluation
metrics live in a trial's `metrics`, cost figures in its `cost` (see tuner.records).
"""

from __future__ import annotations

from dataclasses import dataclass

from tuner.errors import ConfigError
from tuner.units import num, si


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    """Axis and legend text."""
    short: str
    """Column header."""
    direction: str = "minimize"
    source: str = "metrics"
    """Where a trial record keeps it: `metrics` (evaluation) or `cost`."""
    objective: bool = True
    """Whether a study may optimise it."""
    si: bool = False
    """Printed with an SI suffix (1.2M) rather than as a plain number."""

    def format(self, value: float | None) -> str:
        return si(value) if self.si else num(value)


_EVAL = (
    Metric("val_loss", "validation loss (nats/token)", "val loss"),
    Metric("val_perplexity", "validation perplexity", "ppl"),
    Metric("val_bpb", "validation bits per byte", "bpb"),
    Metric("val_accuracy", "validation next-token accuracy", "acc", "maximize"),
    Metric("train_loss", "training loss", "train loss"),
)
_COST = (
    Metric("n_params", "parameters", "params", source="cost", si=True),
    Metric("n_params_non_embedding", "non-embedding parameters", "non-emb", source="cost", si=True),
    Metric("train_flops", "training FLOPs", "FLOPs", source="cost", si=True),
    Metric("wall_seconds", "wall time (s)", "secs", source="cost"),
    Metric("price_usd", "estimated price (USD)", "USD", source="cost"),
    Metric("tokens_seen", "training tokens", "tokens", source="cost", objective=False, si=True),
    Metric("train_seconds", "training time (s)", "train s", source="cost", objective=False),
    Metric("eval_seconds", "evaluation time (s)", "eval s", source="cost", objective=False),
    Metric("task_seconds", "downstream task time (s)", "task s", source="cost", objective=False),
    Metric("mfu", "model FLOPs utilisation", "MFU", "maximize", "cost", objective=False),
    Metric("mfu_palm", "MFU, PaLM's FLOP count", "MFU PaLM", "maximize", "cost", objective=False),
    Metric(
        "mfu_palm_datasheet",
        "MFU, PaLM count, data-sheet peak",
        "MFU sheet",
        "maximize",
        "cost",
        objective=False,
    ),
    Metric("peak_memory_bytes", "peak memory (bytes)", "memory", source="cost", objective=False),
)
REGISTRY: dict[str, Metric] = {m.name: m for m in _EVAL + _COST}

EVAL_METRICS = tuple(m.name for m in _EVAL)
"""Measured at every milestone on the validation split."""
COST_METRICS = tuple(m.name for m in _COST if m.objective)
"""Cost figures a study may optimise or export under."""
OBJECTIVE_METRICS = EVAL_METRICS + COST_METRICS
LOGGED_COST = tuple(m.name for m in _COST)
"""Cost figures logged once when a run ends."""
COST_AXES = ("train_flops", "wall_seconds", "price_usd")
"""The costs a dashboard plots perplexity against."""
BEST_METRICS = ("val_loss", "val_perplexity", "val_bpb", "val_accuracy")
"""Copied onto the study's parent run as `best_*` while it runs."""

TASK_PREFIX = "task."
TASK_METRICS = {
    "classification": ("accuracy", "f1", "majority_accuracy", "majority_f1"),
    "generation": ("bleu", "chrf", "exact_match", "token_accuracy"),
}
"""What each family of downstream task measures (tuner.tasks); all better when larger, bleu and
chrf on sacrebleu's 0-100 scale. f1 is macro-F1. A task also logs its `seconds`."""
_TASK_SCORES = {m for family in TASK_METRICS.values() for m in family}


def get(name: str) -> Metric:
    """The registered metric, or a task metric `task.NAME.METRIC`; ConfigError if unknown."""
    if name in REGISTRY:
        return REGISTRY[name]
    if name.startswith(TASK_PREFIX) and name.count(".") == 2:
        task, score = name.removeprefix(TASK_PREFIX).split(".")
        if score in _TASK_SCORES:
            return Metric(name, f"{task} {score.replace('_', ' ')}", f"{task} {score}", "maximize")
        if score in ("seconds", "examples"):
            return Metric(name, f"{task} {score}", f"{task} {score}", objective=False)
    raise ConfigError(
        f"unknown metric {name!r} (one of {', '.join(OBJECTIVE_METRICS)}, or task.NAME.METRIC)"
    )


def direction(name: str) -> str:
    return get(name).direction


def label(name: str) -> str:
    return REGISTRY[name].label if name in REGISTRY else name
