"""The data a scaling fit reads: finished runs as (N, D, C, loss), from a study or a CSV.

Every point must come from a run whose learning-rate schedule ended at D tokens (DESIGN.md,
decision 10): a loss read off the middle of a longer schedule is biased and stays out.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from tuner.config import ConfigError

MIN_POINTS = 5
"""Approach 3 has five coefficients (E, A, B, alpha, beta): it needs at least as many points."""


@dataclass(frozen=True)
class ScalingPoints:
    """Finished runs: parameters N, training tokens D, compute C and final loss (nats/token)."""

    params: np.ndarray
    tokens: np.ndarray
    flops: np.ndarray
    """Each run's compute: its budget when given, else 6·N·D."""
    loss: np.ndarray
    has_budgets: bool = False
    """True when `flops` were given per run: runs of one IsoFLOP curve then share a value
    (within a tolerance) and approach 2 groups by it. Without them it does not run."""

    def __len__(self) -> int:
        return len(self.loss)


def make_points(
    params: ArrayLike,
    loss: ArrayLike,
    *,
    tokens: ArrayLike | None = None,
    flops: ArrayLike | None = None,
    where: str = "scaling points",
) -> ScalingPoints:
    """Validated points. Tokens default to C / (6·N) and compute to 6·N·D (the plain
    convention for runs tuner did not make; a study passes both, counted its own way).
    Given FLOPs also serve as IsoFLOP budgets for approach 2."""
    if tokens is None and flops is None:
        raise ConfigError(f"{where}: give tokens or flops for every point")
    arrays = {"params": params, "loss": loss, "tokens": tokens, "flops": flops}
    checked: dict[str, np.ndarray] = {}
    for name, values in arrays.items():
        if values is None:
            continue
        array = np.asarray(values, dtype=float).ravel()
        bad = np.flatnonzero(~(np.isfinite(array) & (array > 0)))
        if bad.size:
            raise ConfigError(
                f"{where}: {name}[{bad[0]}] = {array[bad[0]]!r} must be a finite number > 0"
            )
        checked[name] = array
    sizes = {len(a) for a in checked.values()}
    if len(sizes) != 1:
        raise ConfigError(f"{where}: params, tokens/flops and loss differ in length")
    n = checked["params"]
    d = checked["tokens"] if "tokens" in checked else checked["flops"] / (6.0 * n)
    c = checked["flops"] if "flops" in checked else 6.0 * n * d
    return ScalingPoints(n, d, c, checked["loss"], has_budgets="flops" in checked)


def load_csv(
    path: str | Path,
    *,
    params_column: str,
    loss_column: str,
    tokens_column: str | None = None,
    flops_column: str | None = None,
    min_rows: int = MIN_POINTS,
) -> ScalingPoints:
    """Runs from anyone's CSV: a column of parameter counts, one of training tokens or of
    training FLOPs (tokens = C / 6N), and one of final losses. With both tokens and FLOPs, the
    FLOPs group the runs into IsoFLOP budgets. One ConfigError line per problem, naming the
    line and column."""
    path = Path(path)
    if not tokens_column and not flops_column:
        raise ConfigError("--tokens-column / --flops-column: give one of them")
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        raise ConfigError(f"{path}: empty file (expected a header line)")
    header = [name.strip() for name in rows[0]]
    flags = {
        "--params-column": params_column,
        "--tokens-column": tokens_column,
        "--flops-column": flops_column,
        "--loss-column": loss_column,
    }
    index: dict[str, int] = {}
    for flag, column in flags.items():
        if not column:
            continue
        if column not in header:
            raise ConfigError(
                f"{path}: {flag} {column!r} is not a column (columns: {', '.join(header)})"
            )
        index[column] = header.index(column)
    values: dict[str, list[float]] = {column: [] for column in index}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        for column, i in index.items():
            cell = row[i].strip() if i < len(row) else ""
            values[column].append(_positive(cell, f"{path} line {line}, column {column!r}"))
    n_rows = len(values[params_column])
    if n_rows < min_rows:
        raise ConfigError(
            f"{path}: {n_rows} data rows; the fit needs at least {min_rows} "
            "(one per coefficient E, A, B, alpha, beta)"
        )
    return make_points(
        values[params_column],
        values[loss_column],
        tokens=values[tokens_column] if tokens_column else None,
        flops=values[flops_column] if flops_column else None,
        where=str(path),
    )


def _positive(cell: str, where: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise ConfigError(f"{where}: {cell!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{where}: {cell!r} must be a finite number > 0")
    return value


def group_budgets(flops: np.ndarray, tolerance: float = 0.1) -> np.ndarray:
    """An IsoFLOP budget index per point. Sorted by compute, a budget starts at its smallest
    point and takes every point up to (1 + tolerance) times it, so runs logged with slightly
    different FLOPs form one curve while distinct budgets never chain into one."""
    order = np.argsort(flops)
    labels = np.empty(len(flops), dtype=int)
    label, start = -1, -math.inf
    for i in order:
        if flops[i] > start * (1.0 + tolerance):
            label, start = label + 1, flops[i]
        labels[i] = label
    return labels
