"""Approach 2: IsoFLOP parabolas, then power laws N_opt ∝ C^a and D_opt ∝ C^b.

Per compute budget, the loss is fitted by a parabola in log N, whose vertex is N_opt(C) and the
loss there; D_opt(C) is the vertex of a parabola in log D over the same runs (with C = 6ND it
is exactly C / 6·N_opt; tuner's own FLOP count differs, so D is read from the runs, never
derived). Least squares on log N_opt against log C gives N_opt = k·C^a, likewise D_opt.

Intervals: a bootstrap over each budget's points (resample every budget's runs with
replacement, refit its parabola and then the power laws; resamples where fewer than two
budgets keep a valid vertex are skipped). A budget with exactly three sizes is interpolated by
its parabola, so its resamples show none of its noise and the interval is too narrow: the
fit warns about it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from tuner.config import ConfigError
from tuner.scaling.law import one_blas_thread, percentile_interval
from tuner.scaling.points import ScalingPoints, group_budgets

MIN_BUDGETS = 2
MIN_SIZES = 3
MIN_COVERAGE = 0.5
"""Approach 2 runs only where at least this share of the points lies on budgets of 3+ sizes."""


@dataclass(frozen=True)
class IsoflopCurve:
    """One budget's runs and the vertex of its parabola (None with a `note` when invalid)."""

    flops: float
    params: np.ndarray
    tokens: np.ndarray
    loss: np.ndarray
    parabola: tuple[float, float, float] | None
    """loss = c0 + c1·ln N + c2·ln N^2 (for drawing)."""
    params_opt: float | None
    tokens_opt: float | None
    loss_opt: float | None
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "flops": self.flops,
            "params": self.params.tolist(),
            "tokens": self.tokens.tolist(),
            "loss": self.loss.tolist(),
            "parabola": list(self.parabola) if self.parabola else None,
            "params_opt": self.params_opt,
            "tokens_opt": self.tokens_opt,
            "loss_opt": self.loss_opt,
            "note": self.note,
        }


@dataclass(frozen=True)
class PowerLaw:
    """y = coefficient · C^exponent, with bootstrap intervals (None without a bootstrap)."""

    coefficient: float
    exponent: float
    exponent_interval: tuple[float, float] | None = None
    coefficient_interval: tuple[float, float] | None = None

    def __call__(self, flops: ArrayLike) -> np.ndarray:
        return self.coefficient * np.asarray(flops, dtype=float) ** self.exponent

    def to_json(self) -> dict[str, Any]:
        return {
            "coefficient": self.coefficient,
            "exponent": self.exponent,
            "exponent_interval": _pair(self.exponent_interval),
            "coefficient_interval": _pair(self.coefficient_interval),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PowerLaw:
        return cls(
            data["coefficient"],
            data["exponent"],
            _tuple(data.get("exponent_interval")),
            _tuple(data.get("coefficient_interval")),
        )


@dataclass(frozen=True)
class Approach2Fit:
    curves: tuple[IsoflopCurve, ...]
    params_opt: PowerLaw | None
    """N_opt(C); None when fewer than two budgets have a valid vertex."""
    tokens_opt: PowerLaw | None
    level: float
    n_bootstrap: int
    """Resamples that gave both power laws."""
    warnings: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.params_opt.exponent if self.params_opt else None,
            "b": self.tokens_opt.exponent if self.tokens_opt else None,
            "params_opt": self.params_opt.to_json() if self.params_opt else None,
            "tokens_opt": self.tokens_opt.to_json() if self.tokens_opt else None,
            "level": self.level,
            "n_bootstrap": self.n_bootstrap,
            "curves": [curve.to_json() for curve in self.curves],
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Approach2Fit:
        curves = []
        for c in data["curves"]:
            arrays = {k: np.asarray(c[k], dtype=float) for k in ("params", "tokens", "loss")}
            rest = {k: c[k] for k in ("flops", "params_opt", "tokens_opt", "loss_opt", "note")}
            curves.append(IsoflopCurve(**arrays, parabola=_tuple(c["parabola"]), **rest))
        laws = [
            PowerLaw.from_json(data[k]) if data[k] else None for k in ("params_opt", "tokens_opt")
        ]
        return cls(
            tuple(curves), *laws, data["level"], data["n_bootstrap"], tuple(data["warnings"])
        )


def fit_approach2(
    points: ScalingPoints,
    *,
    tolerance: float = 0.1,
    n_bootstrap: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> Approach2Fit:
    """IsoFLOP curves from points grouped by compute (within `tolerance`), their vertices and
    the power laws through them. ConfigError when the points hold fewer than two budgets with
    at least three sizes each; invalid parabolas are left out with a warning."""
    if not points.has_budgets:
        raise ConfigError(
            "approach 2: the runs carry no compute budgets; give each run's FLOPs "
            "(--flops-column) so that runs of one IsoFLOP budget can be grouped"
        )
    labels = group_budgets(points.flops, tolerance)
    groups = [np.flatnonzero(labels == k) for k in range(labels.max() + 1)]
    _check_design(points, groups, tolerance)
    with one_blas_thread():
        curves = [_curve(points, idx) for idx in groups]
        warnings = [
            f"approach 2: budget {c.flops:.3g} FLOPs left out: {c.note}" for c in curves if c.note
        ]
        if any(len(idx) == MIN_SIZES for idx in groups):
            warnings.append(
                f"approach 2: a budget of exactly {MIN_SIZES} runs fits its parabola exactly, "
                "so the bootstrap interval understates the noise; 5 or more sizes a budget help"
            )
        valid = [c for c in curves if c.params_opt is not None]
        if len(valid) < MIN_BUDGETS:
            warnings.append(
                f"approach 2: {len(valid)} budget(s) with a valid parabola; the power laws need "
                f"{MIN_BUDGETS}"
            )
            return Approach2Fit(tuple(curves), None, None, level, 0, tuple(warnings))
        flops = np.array([c.flops for c in valid])
        n_law = _power_law(flops, np.array([c.params_opt for c in valid]))
        d_law = _power_law(flops, np.array([c.tokens_opt for c in valid]))
        samples = _bootstrap(points, groups, n_bootstrap, seed)
    if len(samples):
        n_law = _with_intervals(n_law, samples[:, 0], samples[:, 1], level)
        d_law = _with_intervals(d_law, samples[:, 2], samples[:, 3], level)
    return Approach2Fit(tuple(curves), n_law, d_law, level, len(samples), tuple(warnings))


def _check_design(points: ScalingPoints, groups: list[np.ndarray], tolerance: float) -> None:
    sizes = [len(np.unique(points.params[idx])) for idx in groups]
    enough = sum(n >= MIN_SIZES for n in sizes)
    if enough >= MIN_BUDGETS:
        covered = sum(len(idx) for idx, n in zip(groups, sizes, strict=True) if n >= MIN_SIZES)
        if covered < MIN_COVERAGE * len(points):
            raise ConfigError(
                f"approach 2: only {covered} of {len(points)} points share a compute budget "
                f"(within {tolerance:.0%}) with runs of two other sizes; the points are no "
                "IsoFLOP sweep"
            )
        return
    short = [
        f"{float(np.exp(np.log(points.flops[idx]).mean())):.3g} FLOPs has {n} "
        f"({MIN_SIZES - n} more needed)"
        for idx, n in zip(groups, sizes, strict=True)
        if n < MIN_SIZES
    ]
    detail = f"; sizes per budget: {', '.join(short)}" if short else ""
    raise ConfigError(
        f"approach 2: needs {MIN_BUDGETS} compute budgets with >= {MIN_SIZES} model sizes each; "
        f"found {enough} ({MIN_BUDGETS - enough} more needed){detail}"
    )


def _vertex(x: np.ndarray, loss: np.ndarray) -> tuple[np.ndarray, float, str]:
    """Parabola coefficients (c0, c1, c2) in x (>= 3 distinct values), its vertex and why it
    is invalid ('' if it is not)."""
    center = x.mean()
    c2, c1, c0 = np.polyfit(x - center, loss, 2)
    coefficients = np.array([c0 - c1 * center + c2 * center**2, c1 - 2 * c2 * center, c2])
    if c2 <= 0:
        return coefficients, math.nan, "the parabola opens downward (no minimum)"
    vertex = center - c1 / (2 * c2)
    if not x.min() <= vertex <= x.max():
        return coefficients, vertex, "the parabola's minimum lies outside the sampled range"
    return coefficients, vertex, ""


def _curve(points: ScalingPoints, idx: np.ndarray) -> IsoflopCurve:
    idx = idx[np.argsort(points.params[idx])]
    n, d, loss = points.params[idx], points.tokens[idx], points.loss[idx]
    flops = float(np.exp(np.log(points.flops[idx]).mean()))
    if len(np.unique(n)) < MIN_SIZES:
        note = f"{len(np.unique(n))} sizes (a parabola needs {MIN_SIZES})"
        return IsoflopCurve(flops, n, d, loss, None, None, None, None, note)
    coefficients, u, note = _vertex(np.log(n), loss)
    parabola = (float(coefficients[0]), float(coefficients[1]), float(coefficients[2]))
    if not note:
        _, v, note = _vertex(np.log(d), loss)
    if note:
        if math.isfinite(u):
            note += f" (vertex at N = {math.exp(u):.3g}, sizes {n.min():.3g} to {n.max():.3g})"
        return IsoflopCurve(flops, n, d, loss, parabola, None, None, None, note)
    loss_opt = float(coefficients[0] + coefficients[1] * u + coefficients[2] * u * u)
    return IsoflopCurve(flops, n, d, loss, parabola, math.exp(u), math.exp(v), loss_opt)


def _power_law(flops: np.ndarray, y: np.ndarray) -> PowerLaw:
    exponent, log_coefficient = np.polyfit(np.log(flops), np.log(y), 1)
    return PowerLaw(math.exp(log_coefficient), float(exponent))


def _bootstrap(
    points: ScalingPoints, groups: list[np.ndarray], n_bootstrap: int, seed: int
) -> np.ndarray:
    """(valid resamples, 4): exponent and log-coefficient of N_opt(C), then of D_opt(C)."""
    rng = np.random.default_rng(seed)
    log_n, log_d, loss = np.log(points.params), np.log(points.tokens), points.loss
    flops = [float(np.exp(np.log(points.flops[idx]).mean())) for idx in groups]
    rows = []
    for _ in range(n_bootstrap):
        c, n_opt, d_opt = [], [], []
        for idx, budget in zip(groups, flops, strict=True):
            pick = rng.choice(idx, size=len(idx))
            if len(np.unique(log_n[pick])) < MIN_SIZES:
                continue
            _, u, note_n = _vertex(log_n[pick], loss[pick])
            _, v, note_d = _vertex(log_d[pick], loss[pick])
            if not note_n and not note_d:
                c.append(math.log(budget))
                n_opt.append(u)
                d_opt.append(v)
        if len(c) >= MIN_BUDGETS:
            a, log_k = np.polyfit(c, n_opt, 1)
            b, log_g = np.polyfit(c, d_opt, 1)
            rows.append((a, log_k, b, log_g))
    return np.array(rows).reshape(-1, 4)


def _with_intervals(
    law: PowerLaw, exponents: np.ndarray, log_coefs: np.ndarray, level: float
) -> PowerLaw:
    low, high = percentile_interval(log_coefs, level)
    coefficient_interval = (math.exp(low), math.exp(high))
    return PowerLaw(
        law.coefficient, law.exponent, percentile_interval(exponents, level), coefficient_interval
    )


def _pair(interval: tuple[float, float] | None) -> list[float] | None:
    return list(interval) if interval else None


def _tuple(values: Any) -> Any:
    return tuple(values) if values is not None else None
