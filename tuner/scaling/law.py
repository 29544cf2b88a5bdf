"""Approach 3: the parametric law L(N, D) = E + A / N^alpha + B / D^beta.

Fitted as Besiroglu et al. 2024 ("Chinchilla scaling: a replication attempt") do it, since the
original fit's optimiser and intervals were what went wrong: with a = log A, b = log B,
e = log E, the predicted log-loss is LSE(a - alpha·log N, b - beta·log D, e); the objective is
the Huber loss (delta = 1e-3) of predicted minus observed log-loss; L-BFGS starts from their
grid of initialisations and the best optimum is kept; intervals come from a bootstrap that
resamples points with replacement and refits.

Speed (10,000 points and 200 resamples in seconds on one core): the objective and its analytic
gradient are vectorised numpy; the 4,500-point start grid is screened in one vectorised pass
and L-BFGS runs only from the best few starts; log N and log D are centred inside the
optimiser (a and alpha are otherwise almost collinear), which changes nothing but the
conditioning; a resample is a vector of multiplicities over the same points (points drawn
zero times drop out), and its refit starts from the full-data optimum. The first 10 refits
also start from the best grid start and keep the better optimum; only if that start ever finds
a better, distinct optimum (coefficients more than 0.1 % apart) do all later refits use it too,
since it costs about three times a warm start and on unimodal data never wins.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import minimize

from tuner.config import ConfigError
from tuner.scaling.points import MIN_POINTS, ScalingPoints

HUBER_DELTA = 1e-3
NAMES = ("E", "A", "B", "alpha", "beta")
# Besiroglu et al.'s grid of starts, in their parametrisation (a, b, e, alpha, beta).
START_GRID = np.array(
    list(
        itertools.product(
            np.arange(0, 30, 5.0),  # a
            np.arange(0, 30, 5.0),  # b
            np.arange(-1, 1.5, 0.5),  # e
            np.arange(0, 2.5, 0.5),  # alpha
            np.arange(0, 2.5, 0.5),  # beta
        )
    )
)
BOUNDS = [(None, None)] * 3 + [(1e-6, 10.0)] * 2  # exponents stay positive
SCREEN_POINTS = 2048  # the grid is screened on at most this many points
LBFGS_STARTS = 4
PROBE_RESAMPLES = 10
"""Bootstrap refits that also start from the grid; all of them do once that start has won."""


@dataclass(frozen=True)
class LawFit:
    """Coefficients of L = E + A/N^alpha + B/D^beta, their bootstrap samples and fit quality."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    samples: np.ndarray
    """(n_bootstrap, 5) refitted (E, A, B, alpha, beta); empty without a bootstrap."""
    level: float
    """Two-sided coverage of the percentile intervals, e.g. 0.95."""
    objective: float
    """Mean Huber loss / delta at the optimum (about the mean |log residual| once > delta)."""
    residuals: dict[str, float]

    @property
    def a(self) -> float:
        """Exponent of N_opt ∝ C^a under C = 6ND: beta / (alpha + beta)."""
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:
        """Exponent of D_opt ∝ C^b under C = 6ND: alpha / (alpha + beta)."""
        return self.alpha / (self.alpha + self.beta)

    def coefficients(self) -> np.ndarray:
        return np.array([self.E, self.A, self.B, self.alpha, self.beta])

    def predict(self, params: ArrayLike, tokens: ArrayLike) -> np.ndarray:
        return predict(self.coefficients(), params, tokens)

    def intervals(self) -> dict[str, tuple[float, float]]:
        """Percentile intervals of every coefficient and of the exponents a and b."""
        if not len(self.samples):
            return {}
        e, a_coef, b_coef, alpha, beta = self.samples.T
        columns = {"E": e, "A": a_coef, "B": b_coef, "alpha": alpha, "beta": beta}
        columns |= {"a": beta / (alpha + beta), "b": alpha / (alpha + beta)}
        return {name: percentile_interval(v, self.level) for name, v in columns.items()}


def predict(coefficients: np.ndarray, params: ArrayLike, tokens: ArrayLike) -> np.ndarray:
    """Loss from (E, A, B, alpha, beta); coefficients may be (5,) or (k, 5) -> (k, ...)."""
    c = np.asarray(coefficients, dtype=float)
    n, d = np.asarray(params, dtype=float), np.asarray(tokens, dtype=float)
    if c.ndim == 2:  # one law per row: put the laws on a leading axis
        c = c.T.reshape((5, -1) + (1,) * np.broadcast(n, d).ndim)
    return c[0] + c[1] * n ** -c[3] + c[2] * d ** -c[4]


def percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    tail = 50.0 * (1.0 - level)
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def fit_law(
    points: ScalingPoints, *, n_bootstrap: int = 200, level: float = 0.95, seed: int = 0
) -> LawFit:
    """Fit approach 3 on all points, then refit on `n_bootstrap` resamples for intervals."""
    if len(points) < MIN_POINTS:
        raise ConfigError(
            f"scaling fit: {len(points)} points; L = E + A/N^alpha + B/D^beta needs at least "
            f"{MIN_POINTS} (one per coefficient)"
        )
    if not 0 < level < 1:
        raise ConfigError(f"scaling fit: level must be in (0, 1), got {level}")
    with one_blas_thread():
        return _fit(points, n_bootstrap, level, seed)


def _fit(points: ScalingPoints, n_bootstrap: int, level: float, seed: int) -> LawFit:
    problem = _Problem.of(points)
    grid = problem.screen()
    fits = [(*problem.minimize(start), start) for start in grid[:LBFGS_STARTS]]
    theta, value, best_start = min(fits, key=lambda fit: fit[1])
    rng = np.random.default_rng(seed)
    samples = []
    grid_won = False  # did the grid start ever reach a better, distinct optimum?
    for i in range(n_bootstrap):
        counts = np.bincount(rng.integers(0, len(points), len(points)), minlength=len(points))
        resample = problem.reweighted(counts)
        refit, refit_value = resample.minimize(theta)
        if i < PROBE_RESAMPLES or grid_won:
            other, other_value = resample.minimize(best_start)
            if other_value < refit_value:
                moved = np.abs(problem.coefficients(other) / problem.coefficients(refit) - 1)
                grid_won |= bool(moved.max() > 1e-3)
                refit = other
        samples.append(problem.coefficients(refit))
    coefficients = problem.coefficients(theta)
    log_residual = np.log(predict(coefficients, points.params, points.tokens)) - np.log(points.loss)
    return LawFit(
        *map(float, coefficients),
        samples=np.array(samples).reshape(-1, 5),
        level=level,
        objective=float(value),
        residuals=residual_stats(log_residual),
    )


def residual_stats(log_residual: np.ndarray) -> dict[str, float]:
    """Predicted minus observed log-loss (about the relative error of the predicted loss)."""
    return {
        "log_rmse": float(np.sqrt(np.mean(log_residual**2))),
        "log_mean": float(np.mean(log_residual)),
        "log_mean_abs": float(np.mean(np.abs(log_residual))),
        "log_max_abs": float(np.max(np.abs(log_residual))),
    }


@dataclass(frozen=True)
class _Problem:
    """The Huber objective on centred logs: theta = (a_c, b_c, e, alpha, beta) with
    t1 = a_c - alpha·(log N - x_mean), t2 = b_c - beta·(log D - y_mean), t3 = e; each point
    weighted (a bootstrap resample is a vector of multiplicities; zero-weight points drop)."""

    x: np.ndarray
    y: np.ndarray
    target: np.ndarray
    weight: np.ndarray
    """Normalised so the objective is the weighted mean Huber loss / delta."""
    x_mean: float
    y_mean: float

    @classmethod
    def of(cls, points: ScalingPoints) -> _Problem:
        log_n, log_d = np.log(points.params), np.log(points.tokens)
        x_mean, y_mean = float(log_n.mean()), float(log_d.mean())
        weight = np.full(len(points), 1.0 / len(points) / HUBER_DELTA)
        return cls(log_n - x_mean, log_d - y_mean, np.log(points.loss), weight, x_mean, y_mean)

    def reweighted(self, counts: np.ndarray) -> _Problem:
        keep = counts > 0
        weight = counts[keep] / counts.sum() / HUBER_DELTA
        return _Problem(
            self.x[keep], self.y[keep], self.target[keep], weight, self.x_mean, self.y_mean
        )

    def coefficients(self, theta: np.ndarray) -> np.ndarray:
        """(E, A, B, alpha, beta) from centred theta."""
        a_c, b_c, e, alpha, beta = theta
        big_a, big_b = math.exp(a_c + alpha * self.x_mean), math.exp(b_c + beta * self.y_mean)
        return np.array([math.exp(e), big_a, big_b, alpha, beta])

    def screen(self, chunk: int = 512) -> np.ndarray:
        """All grid starts (centred), best first by their objective on a subsample of points."""
        starts = START_GRID.copy()
        starts[:, 0] -= starts[:, 3] * self.x_mean
        starts[:, 1] -= starts[:, 4] * self.y_mean
        step = max(1, len(self.x) // SCREEN_POINTS)
        x, y, target = self.x[::step], self.y[::step], self.target[::step]
        values = np.empty(len(starts))
        for lo in range(0, len(starts), chunk):
            s = starts[lo : lo + chunk, :, None]
            t1, t2 = s[:, 0] - s[:, 3] * x, s[:, 1] - s[:, 4] * y
            pred = np.logaddexp(np.logaddexp(t1, t2), s[:, 2])
            values[lo : lo + chunk] = _huber(pred - target).sum(axis=1)
        return starts[np.argsort(values, kind="stable")]

    def minimize(self, start: np.ndarray) -> tuple[np.ndarray, float]:
        result = minimize(
            self._value_and_grad,
            start,
            jac=True,
            method="L-BFGS-B",
            bounds=BOUNDS,
            options={"maxiter": 500, "ftol": 1e-13, "gtol": 1e-9},
        )
        return result.x, float(result.fun)

    def _value_and_grad(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        w = self.weight
        a_c, b_c, e, alpha, beta = theta
        t1 = a_c - alpha * self.x
        t2 = b_c - beta * self.y
        with np.errstate(over="ignore", divide="ignore"):
            e1, e2, e3 = np.exp(t1), np.exp(t2), math.exp(min(e, 700.0))
            total = e1 + e2 + e3
            pred = np.log(total)
        if not np.isfinite(pred).all():  # far from the data's scale: shift before exp
            top = np.maximum(np.maximum(t1, t2), e)
            e1, e2, e3 = np.exp(t1 - top), np.exp(t2 - top), np.exp(e - top)
            total = e1 + e2 + e3
            pred = top + np.log(total)
        r = pred - self.target
        c = np.clip(r, -HUBER_DELTA, HUBER_DELTA)  # Huber's derivative; Huber = c·(r - c/2)
        value = float((c * (r - 0.5 * c) * w).sum())
        g = c * w / total  # dHuber/dpred · dpred/dexp(t_k)
        g1, g2 = g * e1, g * e2
        grad = np.array(
            [g1.sum(), g2.sum(), (g * e3).sum(), -(g1 * self.x).sum(), -(g2 * self.y).sum()]
        )
        return value, grad


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """L-BFGS-B calls BLAS on tiny matrices; a multi-threaded BLAS then keeps idle threads
    spinning, which on a busy 2-core machine made fits several times slower. threadpoolctl
    (installed with scikit-learn) caps it when present; without it nothing changes."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _huber(r: np.ndarray) -> np.ndarray:
    c = np.clip(r, -HUBER_DELTA, HUBER_DELTA)
    return c * (r - 0.5 * c)
