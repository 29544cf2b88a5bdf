"""The scaling dashboard, gather step: a study's runs and fit -> plain arrays to draw.

One way, as for study dashboards: gather (here, plain numpy, what the tests check) ->
figures (tuner.scaling.figures) -> page (tuner.scaling.page). Everything drawn is computed
here: the IsoFLOP parabolas sampled along N, the law's compute-optimal N, D and loss over a
range of budgets that runs past the data (the extrapolation), each with its bootstrap band,
and the residuals of every run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np

from tuner.errors import ConfigError
from tuner.scaling.fit import ScalingFit
from tuner.scaling.recommend import optimal_params
from tuner.scaling.study import StudyRun, fit_study, study_runs

if TYPE_CHECKING:
    from tuner.study import StudyHandle

EXTRAPOLATE = 16.0
"""The compute axes run this many times past the largest budget."""
GRID = 60
BAND_LEVEL = 0.9
"""Bands are central 90 % intervals over the bootstrap refits."""


@dataclass(frozen=True)
class Curve:
    """One IsoFLOP budget: its runs, the parabola in log N through them and its vertex."""

    budget: float
    params: np.ndarray
    tokens: np.ndarray
    loss: np.ndarray
    trials: list[int]
    lrs: list[float]
    parabola_params: np.ndarray
    """N at which the parabola is drawn (empty when the budget has no parabola)."""
    parabola_loss: np.ndarray
    law_loss: np.ndarray
    """The parametric law along the same budget, at parabola_params."""
    vertex: tuple[float, float] | None
    """(N_opt, loss there), None when the parabola is invalid."""
    note: str = ""


@dataclass(frozen=True)
class Optimum:
    """The law's compute-optimal N, D and loss over `flops`, with bootstrap bands, and
    approach 2's vertices and power laws."""

    flops: np.ndarray
    params: np.ndarray
    tokens: np.ndarray
    loss: np.ndarray
    params_band: tuple[np.ndarray, np.ndarray] | None
    tokens_band: tuple[np.ndarray, np.ndarray] | None
    loss_band: tuple[np.ndarray, np.ndarray] | None
    vertex_flops: np.ndarray
    vertex_params: np.ndarray
    vertex_tokens: np.ndarray
    vertex_loss: np.ndarray
    approach2_params: np.ndarray | None
    """N_opt = k·C^a over `flops`; None without approach 2."""
    approach2_tokens: np.ndarray | None
    data_max: float
    """The largest budget with runs: where the data ends and the extrapolation begins."""


@dataclass(frozen=True)
class ScalingPage:
    study: str
    runs: list[StudyRun]
    fit: ScalingFit | None
    note: str
    """Why there is no fit yet ('' with one)."""
    curves: list[Curve]
    optimum: Optimum | None
    residuals: np.ndarray
    """Predicted minus observed log-loss, one per run (empty without a fit)."""
    experiment_id: str = ""
    parent_run_id: str = ""
    generated: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))


class NoRuns(ConfigError):
    """The scaling study has no complete run to draw yet."""


def gather_scaling(
    handle: StudyHandle, fit: ScalingFit | None = None, n_bootstrap: int = 200
) -> ScalingPage:
    """The page's data, with `fit` or a new fit of the runs; a study whose runs cannot be
    fitted yet is drawn without one (the page says why)."""
    runs = study_runs(handle)
    if not runs:
        raise NoRuns(f"study {handle.name!r} has no complete IsoFLOP runs yet; nothing to draw")
    note = ""
    if fit is None:
        try:
            fit, _ = fit_study(handle, n_bootstrap=n_bootstrap)
        except ConfigError as err:
            note = str(err)
    return scaling_page(handle.name, runs, fit, note, handle.experiment_id, handle.parent_run_id)


def scaling_page(
    study: str,
    runs: list[StudyRun],
    fit: ScalingFit | None,
    note: str = "",
    experiment_id: str = "",
    parent_run_id: str = "",
) -> ScalingPage:
    curves = [_curve(runs, budget, fit) for budget in sorted({r.budget for r in runs})]
    residuals = np.array([])
    optimum = None
    if fit is not None:
        params = np.array([r.params for r in runs], dtype=float)
        tokens = np.array([r.tokens for r in runs], dtype=float)
        loss = np.array([r.loss for r in runs])
        residuals = np.log(fit.predict(params, tokens)) - np.log(loss)
        optimum = _optimum(fit, max(r.budget for r in runs), min(r.budget for r in runs))
    return ScalingPage(
        study, runs, fit, note, curves, optimum, residuals, experiment_id, parent_run_id
    )


def _curve(runs: list[StudyRun], budget: float, fit: ScalingFit | None) -> Curve:
    mine = sorted((r for r in runs if r.budget == budget), key=lambda r: r.params)
    params = np.array([r.params for r in mine], dtype=float)
    tokens = np.array([r.tokens for r in mine], dtype=float)
    loss = np.array([r.loss for r in mine])
    empty = np.array([])
    iso = fit.approach2 if fit is not None else None
    fitted = next((c for c in iso.curves if _same(c.flops, budget)), None) if iso else None
    runs_of = {"budget": budget, "params": params, "tokens": tokens, "loss": loss}
    runs_of |= {"trials": [r.trial for r in mine], "lrs": [r.lr for r in mine]}
    if fitted is None or fitted.parabola is None:
        note = fitted.note if fitted is not None else "not fitted"
        return Curve(**runs_of, parabola_params=empty, parabola_loss=empty, law_loss=empty,
                     vertex=None, note=note)  # fmt: skip
    low, high = math.log(params.min()) - 0.2, math.log(params.max()) + 0.2
    x = np.linspace(low, high, GRID)
    c0, c1, c2 = fitted.parabola
    curve_loss = c0 + c1 * x + c2 * x * x
    assert fit is not None
    law_loss = fit.predict(np.exp(x), budget / fit.compute.flops_per_token(np.exp(x)))
    vertex = (fitted.params_opt, fitted.loss_opt) if fitted.params_opt is not None else None
    return Curve(
        **runs_of,
        parabola_params=np.exp(x),
        parabola_loss=curve_loss,
        law_loss=law_loss,
        vertex=vertex,
        note=fitted.note,
    )


def _optimum(fit: ScalingFit, data_max: float, data_min: float) -> Optimum:
    flops = np.logspace(math.log10(data_min / 2), math.log10(data_max * EXTRAPOLATE), GRID)
    law, compute = fit.law, fit.compute
    coefficients = law.coefficients()
    params = np.array([float(optimal_params(coefficients, c, compute)) for c in flops])
    tokens = flops / compute.flops_per_token(params)
    loss = law.predict(params, tokens)
    params_band = tokens_band = loss_band = None
    if len(law.samples):
        n_s = np.array([optimal_params(law.samples, c, compute) for c in flops])  # (GRID, S)
        d_s = flops[:, None] / compute.flops_per_token(n_s)
        e, a, b, alpha, beta = law.samples.T
        l_s = e + a * n_s**-alpha + b * d_s**-beta
        params_band, tokens_band, loss_band = (_band(v) for v in (n_s, d_s, l_s))
    iso = fit.approach2
    vertices = [c for c in iso.curves if c.params_opt is not None] if iso else []
    n_law = iso.params_opt if iso else None
    d_law = iso.tokens_opt if iso else None
    return Optimum(
        flops=flops,
        params=params,
        tokens=tokens,
        loss=loss,
        params_band=params_band,
        tokens_band=tokens_band,
        loss_band=loss_band,
        vertex_flops=np.array([c.flops for c in vertices]),
        vertex_params=np.array([c.params_opt for c in vertices], dtype=float),
        vertex_tokens=np.array([c.tokens_opt for c in vertices], dtype=float),
        vertex_loss=np.array([c.loss_opt for c in vertices], dtype=float),
        approach2_params=n_law(flops) if n_law else None,
        approach2_tokens=d_law(flops) if d_law else None,
        data_max=data_max,
    )


def _band(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    tail = 50.0 * (1.0 - BAND_LEVEL)
    low, high = np.percentile(values, [tail, 100.0 - tail], axis=1)
    return low, high


def _same(a: float, b: float) -> bool:
    return abs(math.log(a / b)) < 0.1
