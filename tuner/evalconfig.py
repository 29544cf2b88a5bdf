"""The `eval` section of a RunConfig: downstream tasks run beside perplexity (tuner.tasks).

A task's metrics are named `task.NAME.METRIC` wherever they appear; tuner.metrics knows their
directions, and `EvalConfig.metric_names()` is what a study may use as an objective.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from tuner.metrics import TASK_METRICS, TASK_PREFIX
from tuner.schema import check as _check

TASK_NAME = re.compile(r"^[A-Za-z0-9_]+$")
TASK_KINDS = ("genre", "continuation", "classification", "generation")
CLASSIFICATION_KINDS = ("genre", "classification")
USER_KINDS = ("classification", "generation")


@dataclass(frozen=True)
class TaskConfig:
    """One downstream evaluation task (see tasks.py). Its metrics are `task.NAME.METRIC`."""

    name: str = ""
    """Used in metric names: letters, digits and _ only."""
    kind: str = ""
    """`genre` and `continuation` are built in (shakespeare corpus); `classification` and
    `generation` read the user's dataset."""
    method: Literal["probe", "finetune"] = "probe"
    """Classification kinds: a linear probe on the frozen model's mean-pooled hidden states,
    or fine-tuning a copy of the model with a classification head."""
    max_examples: int = 192
    """Evaluated examples at most (passages, prompts); bounds the task's cost. The default
    keeps both built-in tasks near the cost of training 25k tokens, whatever the model."""
    max_train_examples: int = 1024
    """Training examples at most for the probe or head (classification)."""
    folds: int = 3
    """genre: plays are dealt into this many folds; each passage is classified by a probe
    trained on the other folds' plays (fewer if a genre has fewer plays)."""
    passage_chars: int = 400
    """genre: passages are whole lines of a scene, up to this many characters."""
    probe_c: float = 1.0
    """Inverse L2 strength of the logistic-regression probe."""
    finetune_steps: int = 30
    finetune_batch_size: int = 16
    finetune_lr: float = 1e-3
    prompt_tokens: int = 64
    """Generation kinds: prompts keep their last N tokens (fewer if seq_len needs room)."""
    max_new_tokens: int = 24
    """Generation kinds: greedy tokens generated at most (the line ends at a newline)."""
    stop_at_newline: bool = True
    """Generation kinds: the prediction ends at its first newline."""
    source: Literal["files", "hub"] = "files"
    """User kinds: local files (`data_files`) or a Hugging Face dataset (`dataset`)."""
    dataset: str = ""
    """Hub dataset name (source=hub)."""
    dataset_config: str = ""
    data_files: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """source=files: split name -> .csv/.jsonl/.json/.parquet files."""
    text_column: str = "text"
    label_column: str = "label"
    prompt_column: str = "prompt"
    reference_column: str = "reference"
    train_split: str = "train"
    """Where a probe or head learns (user classification)."""
    val_split: str = "validation"
    """What trials are evaluated on (user kinds)."""
    test_split: str = "test"
    """What `tuner train` is evaluated on (user kinds)."""
    seed: int = 0

    def __post_init__(self) -> None:
        where = f"eval.tasks.{self.name}" if TASK_NAME.match(self.name) else "eval.tasks"
        _check(
            bool(TASK_NAME.match(self.name)),
            f"{where}.name",
            f"{self.name!r} must be letters, digits or _ (it names metrics task.NAME.METRIC)",
        )
        _check(
            self.kind in TASK_KINDS,
            f"{where}.kind",
            f"{self.kind or 'missing'!r} is not one of {', '.join(TASK_KINDS)}",
        )
        for key in ("max_examples", "max_train_examples", "passage_chars", "max_new_tokens"):
            _check(getattr(self, key) > 0, f"{where}.{key}", "must be > 0")
        for key in ("prompt_tokens", "finetune_steps", "finetune_batch_size"):
            _check(getattr(self, key) > 0, f"{where}.{key}", "must be > 0")
        _check(self.folds >= 2, f"{where}.folds", "must be >= 2")
        _check(self.probe_c > 0, f"{where}.probe_c", "must be > 0")
        _check(self.finetune_lr > 0, f"{where}.finetune_lr", "must be > 0")
        if self.kind in USER_KINDS:
            if self.source == "hub":
                _check(bool(self.dataset), f"{where}.dataset", "required for source=hub")
            else:
                _check(bool(self.data_files), f"{where}.data_files", "required for source=files")


@dataclass(frozen=True)
class EvalConfig:
    """Downstream tasks run at a trial's last milestone and by `tuner train` on the test split."""

    tasks: tuple[TaskConfig, ...] = ()
    every_milestone: bool = False
    """Also run the tasks at every milestone (their metrics then form curves)."""

    def __post_init__(self) -> None:
        names = [t.name for t in self.tasks]
        for name in names:
            _check(names.count(name) == 1, f"eval.tasks.{name}", "duplicate task name")

    def metric_names(self) -> list[str]:
        """Every metric the tasks produce, `task.NAME.METRIC`: what a study may optimise."""
        out = []
        for task in self.tasks:
            family = "classification" if task.kind in CLASSIFICATION_KINDS else "generation"
            out += [f"{TASK_PREFIX}{task.name}.{metric}" for metric in TASK_METRICS[family]]
        return out
