"""A scaling fit: approach 3 (the parametric law) and approach 2 (IsoFLOP parabolas) on the
same points, with the compute convention that maps a budget to N and D, as one result that
serialises to JSON (for `--json`, the MLflow artifact and later recommendations) and prints
as a short text summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from tuner.config import ConfigError
from tuner.scaling.approach2 import Approach2Fit, fit_approach2
from tuner.scaling.compute import ComputeModel
from tuner.scaling.law import HUBER_DELTA, NAMES, START_GRID, LawFit, fit_law
from tuner.scaling.points import ScalingPoints

METHOD = (
    f"approach 3: Huber loss (delta {HUBER_DELTA:g}) on log L with the log-sum-exp "
    f"parametrisation, L-BFGS-B from the best of a {len(START_GRID)}-point start grid "
    "(Besiroglu et al. 2024); percentile intervals from a bootstrap over points. approach 2: "
    "parabolas in log N and log D per budget, least squares in log-log; percentile intervals "
    "from a bootstrap over each budget's points"
)


@dataclass(frozen=True)
class ScalingFit:
    law: LawFit
    approach2: Approach2Fit | None
    compute: ComputeModel
    n_points: int
    ranges: dict[str, tuple[float, float]]
    """Smallest and largest params, tokens and flops of the fitted points."""
    warnings: tuple[str, ...] = field(default=())

    def predict(self, params: ArrayLike, tokens: ArrayLike) -> np.ndarray:
        return self.law.predict(params, tokens)

    def to_json(self) -> dict[str, Any]:
        law = self.law
        out: dict[str, Any] = {name: getattr(law, name) for name in NAMES}
        out |= {"a": law.a, "b": law.b, "level": law.level}
        out["intervals"] = {k: list(v) for k, v in law.intervals().items()}
        out |= {"residuals": law.residuals, "objective": law.objective, "n_points": self.n_points}
        out["ranges"] = {k: list(v) for k, v in self.ranges.items()}
        out["approach2"] = self.approach2.to_json() if self.approach2 else None
        out["compute"] = self.compute.to_json()
        out["bootstrap"] = {"n": len(law.samples), "samples": law.samples.tolist()}
        out |= {"method": METHOD, "warnings": list(self.warnings)}
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScalingFit:
        """The inverse of `to_json` (a fit read back from its JSON artifact)."""
        try:
            law = LawFit(
                *(float(data[name]) for name in NAMES),
                samples=np.asarray(data["bootstrap"]["samples"], dtype=float).reshape(-1, 5),
                level=float(data["level"]),
                objective=float(data["objective"]),
                residuals=dict(data["residuals"]),
            )
            approach2 = Approach2Fit.from_json(data["approach2"]) if data["approach2"] else None
            ranges = {k: (float(v[0]), float(v[1])) for k, v in data["ranges"].items()}
            compute = ComputeModel.from_json(data["compute"])
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise ConfigError(f"scaling fit JSON: missing or malformed field ({err})") from None
        return cls(law, approach2, compute, int(data["n_points"]), ranges, tuple(data["warnings"]))

    def summary(self) -> str:
        """What the CLI prints: coefficients with intervals, residuals, approach 2, warnings."""
        law, intervals = self.law, self.law.intervals()
        r = self.ranges
        lines = [
            f"scaling fit: {self.n_points} points, params {_span(r['params'])}, "
            f"tokens {_span(r['tokens'])}, compute {_span(r['flops'])} FLOPs",
            f"approach 3: L = E + A/N^alpha + B/D^beta  ({law.level:.0%} bootstrap intervals, "
            f"{len(law.samples)} resamples)",
        ]
        for name in (*NAMES, "a", "b"):
            lines.append(
                f"  {name:<6} {getattr(law, name):<10.4g} {_interval(intervals.get(name))}"
            )
        lines.append("  (a, b: exponents of N_opt and D_opt in C under C = 6ND)")
        res = law.residuals
        lines.append(
            f"  residuals in log L: rmse {res['log_rmse']:.4f}, mean {res['log_mean']:+.4f}, "
            f"max |r| {res['log_max_abs']:.4f}"
        )
        lines += _approach2_lines(self.approach2)
        lines.append(f"compute convention: {self.compute.describe()}")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def fit_scaling_law(
    points: ScalingPoints,
    *,
    compute: ComputeModel | None = None,
    n_bootstrap: int = 200,
    level: float = 0.95,
    seed: int = 0,
    approach2: Literal["auto", "require", "off"] = "auto",
    budget_tolerance: float = 0.1,
) -> ScalingFit:
    """Both fits on `points`. approach2="auto" runs approach 2 when the points form at least
    two IsoFLOP budgets of three sizes and otherwise notes why not; "require" (an IsoFLOP
    study) turns that into a ConfigError instead."""
    if n_bootstrap < 0:
        raise ConfigError(f"--bootstrap: must be >= 0, got {n_bootstrap}")
    warnings: list[str] = []
    iso = None
    if approach2 != "off":
        try:
            iso = fit_approach2(
                points, tolerance=budget_tolerance, n_bootstrap=n_bootstrap, level=level, seed=seed
            )
            warnings += iso.warnings
        except ConfigError as err:
            if approach2 == "require":
                raise
            warnings.append(f"approach 2 skipped: {err}")
    law = fit_law(points, n_bootstrap=n_bootstrap, level=level, seed=seed)
    ranges = {
        "params": _minmax(points.params),
        "tokens": _minmax(points.tokens),
        "flops": _minmax(points.flops),
    }
    return ScalingFit(
        law, iso, compute or ComputeModel.six_nd(), len(points), ranges, tuple(warnings)
    )


def _approach2_lines(iso: Approach2Fit | None) -> list[str]:
    if iso is None or iso.params_opt is None or iso.tokens_opt is None:
        return ["approach 2: not available (see warnings)"]
    n_law, d_law = iso.params_opt, iso.tokens_opt
    lines = [
        f"approach 2: IsoFLOP parabolas ({iso.level:.0%} intervals, {iso.n_bootstrap} resamples)",
        f"  N_opt = {n_law.coefficient:.4g} * C^a, a = {n_law.exponent:.4f} "
        f"{_interval(n_law.exponent_interval)}",
        f"  D_opt = {d_law.coefficient:.4g} * C^b, b = {d_law.exponent:.4f} "
        f"{_interval(d_law.exponent_interval)}",
    ]
    for c in iso.curves:
        if c.params_opt is not None:
            lines.append(
                f"  budget {c.flops:.3g}: {len(c.loss)} runs, N_opt {c.params_opt:.3g}, "
                f"D_opt {c.tokens_opt:.3g}, loss {c.loss_opt:.4f}"
            )
        else:
            lines.append(f"  budget {c.flops:.3g}: {len(c.loss)} runs, no vertex ({c.note})")
    return lines


def _interval(interval: tuple[float, float] | None) -> str:
    return f"[{interval[0]:.4g}, {interval[1]:.4g}]" if interval else ""


def _span(pair: tuple[float, float]) -> str:
    return f"{pair[0]:.3g} to {pair[1]:.3g}"


def _minmax(values: np.ndarray) -> tuple[float, float]:
    return float(values.min()), float(values.max())
