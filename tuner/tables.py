"""The rows and columns of `tuner study show` and `tuner study list`, as plain data.

A row holds raw values by column key; a column knows its header, alignment and how to write a
value for people. The order of `trial_columns` is the order of importance (objective first,
then the hyperparameters), so a narrow terminal drops columns from the end, never cuts a cell
(see tuner.tableformat, which lays the columns out).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna

from tuner import metrics
from tuner.errors import ConfigError
from tuner.records import TrialRecord, retried_as
from tuner.space import short_name
from tuner.units import num, plural

if TYPE_CHECKING:
    from tuner.study import StudyHandle


@dataclass(frozen=True)
class Column:
    """One column: its key in a row, its header, and how its values are written."""

    key: str
    header: str
    numeric: bool = False
    """Right-aligned."""
    text: Callable[[Any], str] = num
    """A value as people read it (the raw value goes to csv and json)."""


@dataclass
class Table:
    """What a table shows: a title, columns and rows of raw values."""

    title: str
    columns: list[Column]
    rows: list[dict[str, Any]]


# ---------------------------------------------------------------- study show


def trial_rows(handle: StudyHandle) -> list[dict[str, Any]]:
    """One row per trial that ran or runs (queued slots are left out), keyed by column key.

    Every metric and cost figure the trial recorded is in its row, so any of them can be asked
    for with `--columns`; a lost trial's reason names its retry.
    """
    study = handle.study
    trials = study.get_trials(deepcopy=False)
    complete = any(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    best_numbers = {t.number for t in study.best_trials} if complete else set()
    retries = retried_as(trials)
    tasks = handle.space.base.eval.metric_names()
    rows = []
    for t in trials:
        if t.state == optuna.trial.TrialState.WAITING:
            continue
        record = TrialRecord.of(t)
        reason = record.reason
        if t.number in retries:
            reason = f"worker lost; retried as trial {retries[t.number]}"
        figures = {k: record.value(k) for k in [*metrics.REGISTRY, *tasks]}
        rows.append(
            {
                **figures,
                **{f"param.{k}": v for k, v in record.params.items()},
                "best": t.number in best_numbers,
                "trial": t.number,
                "state": record.state,
                "reason": reason,
                "duration": record.duration,
                "mlflow_run_id": record.run_id,
            }
        )
    return rows


def _metric_column(name: str) -> Column:
    m = metrics.get(name)
    return Column(name, m.short, numeric=True, text=m.format)


FIXED = {
    "best": Column("best", "", text=lambda best: "*" if best else ""),
    "trial": Column("trial", "trial", numeric=True),
    "state": Column("state", "state"),
    "duration": Column("duration", "secs", numeric=True, text=lambda v: _seconds(v)),
    "reason": Column("reason", "reason", text=lambda v: v or ""),
    "mlflow_run_id": Column("mlflow_run_id", "MLflow run"),
}
SHOWN_AFTER_PARAMS = ("n_params", "val_perplexity", "val_bpb", "train_flops", "duration")
"""What a table shows after the objective, the hyperparameters and the tasks' headline scores,
most useful first."""
HEADLINE_SCORES = ("f1", "chrf")
"""The score of each downstream task a table shows unasked (the others: `--columns`, csv, json)."""


def trial_columns(
    handle: StudyHandle, requested: str | None = None, every: bool = False
) -> list[Column]:
    """The columns of `study show`, most important first: best mark, trial, state, the
    objective(s), the hyperparameters, size and the other metrics. `requested` (`--columns`)
    names them instead; `every` adds the reason and the MLflow run (csv, json)."""
    params = [p.name for p in handle.space.params]
    numeric = {p.name for p in handle.space.params if all(map(_is_number, p.choices))}
    tasks = handle.space.base.eval.metric_names()
    known = _known_columns(params, numeric, tasks)
    if requested is not None:
        return _requested(requested, known, params)
    keys = ["best", "trial", "state"]
    keys += [o.metric for o in handle.space.objectives]
    keys += [f"param.{p}" for p in params]
    keys += tasks if every else [t for t in tasks if t.rsplit(".", 1)[1] in HEADLINE_SCORES]
    keys += list(SHOWN_AFTER_PARAMS)
    if every:
        keys += ["reason", "mlflow_run_id"]
    seen: list[str] = []
    for key in keys:
        if key not in seen:
            seen.append(key)
    return [known[k] for k in seen]


def _known_columns(params: list[str], numeric: set[str], tasks: list[str]) -> dict[str, Column]:
    known = dict(FIXED)
    known.update({name: _metric_column(name) for name in [*metrics.REGISTRY, *tasks]})
    known.update({f"param.{p}": Column(f"param.{p}", short_name(p), p in numeric) for p in params})
    return known


def _requested(text: str, known: dict[str, Column], params: list[str]) -> list[Column]:
    """`--columns trial,state,val_loss,learning_rate` -> those columns, in that order."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError("--columns: name at least one column, e.g. --columns trial,val_loss")
    columns = []
    for name in names:
        key = f"param.{name}" if name in params else name
        if key not in known:
            choices = ", ".join(k.removeprefix("param.") for k in known)
            raise ConfigError(f"--columns {name}: unknown column (one of {choices})")
        columns.append(known[key])
    return columns


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def trial_table(handle: StudyHandle, requested: str | None = None, every: bool = False) -> Table:
    """`study show` as a Table (title, columns, rows)."""
    space = handle.space
    rows = trial_rows(handle)
    title = (
        f"study {handle.name}: {space.sampler} sampler, {space.pruner} pruner, "
        f"{plural(len(rows), 'trial')}"
    )
    return Table(title, trial_columns(handle, requested, every), rows)


# ---------------------------------------------------------------- study list


STUDY_COLUMNS = [
    Column("name", "name"),
    Column("progress", "trials", numeric=True),
    Column("complete", "complete", numeric=True),
    Column("best", "best", numeric=True),
    Column("sampler", "sampler"),
    Column("space", "space"),
    Column("created", "created", text=lambda v: str(v or "")[:16]),
]


def study_table(summaries: list[dict[str, Any]], every: bool = False) -> Table:
    """`study list` as a Table; `summaries` come from tuner.study.list_studies."""
    rows = [s | {"progress": f"{s['trials']}/{s['target']}"} for s in summaries]
    columns = list(STUDY_COLUMNS)
    if every:  # csv/json get the counts as numbers too
        columns[1:2] = [Column("trials", "trials", True), Column("target", "target", True)]
    return Table(plural(len(rows), "study", "studies"), columns, rows)
