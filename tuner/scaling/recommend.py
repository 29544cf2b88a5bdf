"""Compute-optimal recipes from a fit: for a budget C, the N and D that minimise the fitted
L(N, D) subject to C = flops_per_token(N)·D (the fit's compute convention), the loss to expect
with an interval, and approach 2's answer beside it.

Under C = 6ND the optimum has a closed form (Hoffmann et al. 2022, appendix D):
N_opt = G·(C/6)^a, D_opt = (C/6)^b / G, G = (alpha·A / (beta·B))^(1/(alpha+beta)),
a = beta/(alpha+beta), b = alpha/(alpha+beta). Under tuner's convention the optimum is found
numerically along the budget's curve. The loss interval is the bootstrap spread of the
law's prediction at the recommended (N, D): the uncertainty of the fit, not run-to-run noise
(the fit's residuals say how large that is).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import brentq

from tuner.config import ConfigError
from tuner.scaling.compute import ComputeModel
from tuner.scaling.fit import ScalingFit
from tuner.scaling.law import percentile_interval, predict


@dataclass(frozen=True)
class Recommendation:
    params: float
    tokens: float
    flops: float
    loss: float
    loss_interval: tuple[float, float] | None
    params_interval: tuple[float, float] | None
    """Spread of the compute-optimal N over the bootstrap (budget-only recommendations)."""
    tokens_interval: tuple[float, float] | None
    level: float
    given: tuple[str, ...]
    """Which of flops, params, tokens were given; the rest were solved for."""
    approach2_params: float | None = None
    approach2_tokens: float | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def tokens_per_param(self) -> float:
        return self.tokens / self.params

    def to_json(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "tokens": self.tokens,
            "loss": self.loss,
            "flops": self.flops,
            "tokens_per_param": self.tokens_per_param,
            "loss_interval": _pair(self.loss_interval),
            "params_interval": _pair(self.params_interval),
            "tokens_interval": _pair(self.tokens_interval),
            "level": self.level,
            "given": list(self.given),
            "approach2": {"params": self.approach2_params, "tokens": self.approach2_tokens},
            "warnings": list(self.warnings),
        }

    def summary(self) -> str:
        solved = ", ".join(k for k in ("flops", "params", "tokens") if k not in self.given)
        lines = [
            f"given {', '.join(self.given)}; solved for {solved}",
            f"  compute  {self.flops:.4g} FLOPs",
            f"  params   {self.params:.4g} {_interval(self.params_interval)}",
            f"  tokens   {self.tokens:.4g} {_interval(self.tokens_interval)}",
            f"  tokens/param {self.tokens_per_param:.3g}",
            f"  loss     {self.loss:.4f} {_interval(self.loss_interval, '.4f')}"
            + (f" ({self.level:.0%} bootstrap interval of the fit)" if self.loss_interval else ""),
        ]
        if self.approach2_params is not None and self.approach2_tokens is not None:
            lines.append(
                f"  approach 2 at this compute: params {self.approach2_params:.4g}, "
                f"tokens {self.approach2_tokens:.4g}"
            )
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(line.rstrip() for line in lines)


def recommend(
    fit: ScalingFit,
    *,
    flops: float | None = None,
    params: float | None = None,
    tokens: float | None = None,
) -> Recommendation:
    """Answer from any one or two of compute, parameters and tokens.

    - flops: the compute-optimal N and D for that budget;
    - flops and params (or tokens): the other one from the budget;
    - params (or tokens) alone: the budget for which it is compute-optimal, and its partner;
    - params and tokens: just the predicted loss (and the compute it costs).
    """
    given = {"flops": flops, "params": params, "tokens": tokens}
    for name, value in given.items():
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ConfigError(f"--{name}: must be a number > 0, got {value}")
    named = tuple(k for k, v in given.items() if v is not None)
    if not named or len(named) == 3:
        raise ConfigError("--flops / --params / --tokens: give one or two of them")
    law, compute = fit.law, fit.compute
    coefficients = law.coefficients()
    params_interval = tokens_interval = None
    if named == ("flops",):
        assert flops is not None
        params = float(optimal_params(coefficients, flops, compute))
        tokens = flops / float(compute.flops_per_token(params))
        if len(law.samples):
            sample_params = optimal_params(law.samples, flops, compute)
            params_interval = percentile_interval(sample_params, law.level)
            sample_tokens = flops / compute.flops_per_token(sample_params)
            tokens_interval = percentile_interval(sample_tokens, law.level)
    elif named == ("flops", "params"):
        assert flops is not None and params is not None
        tokens = flops / float(compute.flops_per_token(params))
    elif named == ("flops", "tokens"):
        assert flops is not None and tokens is not None
        params = params_for_flops_per_token(flops / tokens, compute)
    elif named == ("params",):
        assert params is not None
        flops = _solve_log(lambda c: float(optimal_params(coefficients, c, compute)), params)
        tokens = flops / float(compute.flops_per_token(params))
    elif named == ("tokens",):
        assert tokens is not None

        def optimal_tokens(c: float) -> float:
            return c / float(compute.flops_per_token(optimal_params(coefficients, c, compute)))

        flops = _solve_log(optimal_tokens, tokens)
        params = float(optimal_params(coefficients, flops, compute))
    else:
        assert params is not None and tokens is not None
        flops = float(compute.flops_per_token(params)) * tokens
    assert flops is not None and params is not None and tokens is not None
    loss = float(law.predict(params, tokens))
    loss_interval = None
    if len(law.samples):
        loss_interval = percentile_interval(predict(law.samples, params, tokens), law.level)
    iso = fit.approach2
    n_law, d_law = (iso.params_opt, iso.tokens_opt) if iso else (None, None)
    return Recommendation(
        params=params,
        tokens=tokens,
        flops=flops,
        loss=loss,
        loss_interval=loss_interval,
        params_interval=params_interval,
        tokens_interval=tokens_interval,
        level=law.level,
        given=named,
        approach2_params=float(n_law(flops)) if n_law else None,
        approach2_tokens=float(d_law(flops)) if d_law else None,
        warnings=tuple(_range_warnings(fit, flops=flops, params=params, tokens=tokens)),
    )


def chinchilla_optimum(coefficients: np.ndarray, flops: float) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form compute-optimal (N, D) under C = 6ND; one row of coefficients per law."""
    e, big_a, big_b, alpha, beta = np.atleast_2d(coefficients).T
    g = (alpha * big_a / (beta * big_b)) ** (1.0 / (alpha + beta))
    n_opt = g * (flops / 6.0) ** (beta / (alpha + beta))
    return n_opt, flops / 6.0 / n_opt


def optimal_params(coefficients: np.ndarray, flops: float, compute: ComputeModel) -> np.ndarray:
    """Compute-optimal N for budget `flops`: (k,) for (k, 5) coefficients, scalar for (5,)."""
    rows = np.atleast_2d(coefficients)
    if compute.convention == "6N":
        n_opt, _ = chinchilla_optimum(rows, flops)
    else:
        n_opt = _numeric_optimum(rows, flops, compute)
    return n_opt if np.ndim(coefficients) == 2 else n_opt[0]


def _numeric_optimum(rows: np.ndarray, flops: float, compute: ComputeModel) -> np.ndarray:
    """Minimise A/N^alpha + B/D^beta along D = C / flops_per_token(N) on a grid in log N,
    refined three times around each law's best point (~1e-6 relative precision)."""
    _, big_a, big_b, alpha, beta = (col[:, None] for col in rows.T)

    def reducible_loss(log_n: np.ndarray) -> np.ndarray:
        n = np.exp(log_n)
        d = flops / compute.flops_per_token(n)
        return big_a * n**-alpha + big_b * d**-beta

    lo, hi = 0.0, math.log(flops / 6.0)  # N from 1 to the N that leaves one token
    grid = np.broadcast_to(np.linspace(lo, hi, 513), (len(rows), 513))
    center = grid[np.arange(len(rows)), np.argmin(reducible_loss(grid), axis=1)]
    width = (hi - lo) / 512
    for _ in range(3):
        grid = center[:, None] + np.linspace(-width, width, 65)
        center = grid[np.arange(len(rows)), np.argmin(reducible_loss(grid), axis=1)]
        width /= 32
    return np.exp(center)


def params_for_flops_per_token(target: float, compute: ComputeModel) -> float:
    """The N whose flops_per_token is `target` (FLOPs per token grow with N)."""
    if compute.convention == "6N":
        return target / 6.0

    def gap(log_n: float) -> float:
        return math.log(float(compute.flops_per_token(math.exp(log_n))) / target)

    hi = math.log(target / 6.0)
    if gap(-20.0) > 0:
        raise ConfigError("--tokens: the budget leaves fewer FLOPs a token than any model needs")
    return math.exp(brentq(gap, -20.0, hi, xtol=1e-12))


def _solve_log(increasing: Any, target: float) -> float:
    """The compute C where increasing(C) equals target, by bisection in log C."""

    def gap(log_c: float) -> float:
        return math.log(increasing(math.exp(log_c)) / target)

    lo, hi = math.log(6.0 * target) - 10.0, math.log(6.0 * target) + 60.0
    while gap(lo) > 0:
        lo -= 20.0
    while gap(hi) < 0:
        hi += 20.0
    return math.exp(brentq(gap, lo, hi, xtol=1e-12))


def _range_warnings(fit: ScalingFit, **values: float) -> list[str]:
    """One line per quantity outside the range of the fitted points (an extrapolation)."""
    out = []
    for name, value in values.items():
        low, high = fit.ranges[name]
        if value < low or value > high:
            factor = low / value if value < low else value / high
            out.append(
                f"{name} {value:.3g} is outside the fitted range {low:.3g} to {high:.3g} "
                f"({factor:.3g}x beyond): an extrapolation"
            )
    return out


def _interval(interval: tuple[float, float] | None, fmt: str = ".4g") -> str:
    return f"[{interval[0]:{fmt}}, {interval[1]:{fmt}}]" if interval else ""


def _pair(interval: tuple[float, float] | None) -> list[float] | None:
    return list(interval) if interval else None
