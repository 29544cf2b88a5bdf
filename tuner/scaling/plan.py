"""IsoFLOP planning: for each compute budget, K model sizes around the expected optimum, each
with the tokens that spend the budget, as points a study enqueues as trials.

Sizes are spread log-uniformly over [N*/spread, N*·spread] around N*, the compute-optimal N of
a prior fit or, without one, the N that gets `tokens_per_param` tokens (20, Hoffmann et al.
2022). Each target becomes a real shape (`ShapeRule.shape`), and its tokens are the budget
divided by that shape's exact `tuner.models.flops_per_token` (the count every trial records),
rounded down to whole optimizer steps: a trial's schedule then ends where its budget does.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from tuner.config import ConfigError, ModelConfig, RunConfig
from tuner.scaling.approach2 import MIN_BUDGETS, MIN_SIZES
from tuner.scaling.compute import ComputeModel, ShapeRule
from tuner.scaling.fit import ScalingFit
from tuner.scaling.recommend import optimal_params


@dataclass(frozen=True)
class PlanPoint:
    """One IsoFLOP trial: its budget, the size aimed at, the shape built and its tokens."""

    budget: float
    """Compute budget C (FLOPs) of the curve this point belongs to."""
    target_params: float
    params: int
    """Non-embedding parameters of `model` (as `count_params` counts them)."""
    model: ModelConfig
    flops_per_token: float
    tokens: int
    """Whole steps of batch_size·seq_len; tokens·flops_per_token <= budget."""
    steps: int

    @property
    def flops(self) -> float:
        """The compute the trial actually spends."""
        return self.tokens * self.flops_per_token

    def overrides(self) -> dict[str, Any]:
        """Dotted RunConfig paths to set on the base config (`config.apply_overrides`).

        The budget goes in as `train.flops`: the run then derives exactly `tokens` (whole
        steps, its schedule ending there) and its config carries its nominal IsoFLOP budget,
        which is what a fit groups runs by; `train.tokens` states the same amount."""
        model = {f"model.{k}": v for k, v in dataclasses.asdict(self.model).items()}
        return model | {"train.tokens": self.tokens, "train.flops": float(self.budget)}

    def to_json(self) -> dict[str, Any]:
        return {
            "budget": self.budget,
            "target_params": self.target_params,
            "params": self.params,
            "model": dataclasses.asdict(self.model),
            "flops_per_token": self.flops_per_token,
            "tokens": self.tokens,
            "steps": self.steps,
            "flops": self.flops,
        }


@dataclass(frozen=True)
class IsoflopPlan:
    points: tuple[PlanPoint, ...]
    warnings: tuple[str, ...]
    """Targets dropped (too small a model, too few tokens for one step, a duplicate shape)."""


def shape_rule_for(
    model: ModelConfig, head_dim: int = 0, aspect_ratio: float = 64.0, n_layer: int = 0
) -> ShapeRule:
    """The shape rule for the base config's architecture; head_dim 0 keeps the base's own
    width per head (d_model / n_head of its preset), else 32; n_layer > 0 fixes the depth."""
    from tuner.models import resolve_shape  # torch: only when planning

    if model.arch not in ("gpt2", "llama"):
        raise ConfigError(f"model.arch: IsoFLOP studies need gpt2 or llama, not {model.arch!r}")
    if not head_dim:
        shape = resolve_shape(model)
        head_dim = shape.d_model // shape.n_head if shape.n_head else 32
    return ShapeRule(model.arch, aspect_ratio, head_dim, n_layer=n_layer)  # type: ignore[arg-type]


def compute_model_for(base: RunConfig, vocab_size: int, rule: ShapeRule) -> ComputeModel:
    """tuner's FLOP convention for the base config's context length and vocabulary."""
    return ComputeModel.tuner(rule, vocab_size, base.train.seq_len)


def plan_isoflop(
    budgets: list[float],
    base: RunConfig,
    vocab_size: int,
    *,
    sizes: int = 5,
    spread: float = 4.0,
    rule: ShapeRule | None = None,
    prior: ScalingFit | None = None,
    tokens_per_param: float = 20.0,
    min_params: int = 0,
    min_steps: int = 0,
) -> IsoflopPlan:
    """`sizes` trials per budget, largest/smallest N = spread^2 around the expected optimum.

    Targets below `min_params` (default: the rule's one-layer, one-head model) or whose tokens
    make fewer than `min_steps` steps (default: the base's milestones, the fewest a trial
    runs) are dropped, as are duplicates of a shape; a budget left with fewer than three
    trials is a ConfigError naming it. Nothing is written.
    """
    _check_inputs(budgets, sizes, spread, tokens_per_param)
    rule = rule or shape_rule_for(base.model)
    compute = compute_model_for(base, vocab_size, rule)
    min_params = max(min_params, rule.smallest_params())
    min_steps = min_steps or base.train.milestones
    tokens_per_step = base.train.batch_size * base.train.seq_len
    points: list[PlanPoint] = []
    warnings: list[str] = []
    for budget in sorted(budgets):
        center = expected_optimum(budget, compute, prior, tokens_per_param)
        kept: list[PlanPoint] = []
        for target in center * spread ** np.linspace(-1.0, 1.0, sizes):
            point = plan_point(budget, float(target), base, vocab_size, rule)
            why = ""
            if target < min_params:
                why = f"below the smallest model ({min_params:,} parameters)"
            elif point.steps < min_steps:
                why = (
                    f"{point.tokens:,} tokens = {point.steps} steps of {tokens_per_step:,}, "
                    f"fewer than {min_steps}"
                )
            elif any(p.model == point.model for p in kept):
                why = f"the same shape as a smaller target ({point.params:,} parameters)"
            if why:
                warnings.append(f"budget {budget:.3g}: target N {target:.3g} dropped: {why}")
            else:
                kept.append(point)
        if len(kept) < MIN_SIZES:
            step_flops = tokens_per_step * _smallest_fpt(rule, base, vocab_size)
            small = sum(f"budget {budget:.3g}:" in w and "smallest model" in w for w in warnings)
            why = (
                f"{small} target sizes are below the smallest model ({min_params:,} "
                f"parameters: one layer of width {rule.smallest_width()}); "
                if small
                else ""
            )
            raise ConfigError(
                f"--budgets: {budget:.3g} FLOPs leaves {len(kept)} trainable sizes of {sizes} "
                f"(a parabola needs {MIN_SIZES}); {why}one step of {tokens_per_step:,} tokens "
                f"at the smallest model costs {step_flops:.3g} FLOPs and a trial needs "
                f"{min_steps} steps; raise the budget"
            )
        points += kept
    return IsoflopPlan(tuple(points), tuple(warnings))


def _check_inputs(budgets: list[float], sizes: int, spread: float, tokens_per_param: float) -> None:
    if any(not (math.isfinite(b) and b > 0) for b in budgets):
        raise ConfigError(f"--budgets: every budget must be a number > 0, got {budgets}")
    distinct = len(set(budgets))
    if distinct < MIN_BUDGETS:
        raise ConfigError(
            f"--budgets: approach 2 needs {MIN_BUDGETS} distinct budgets, got {distinct} "
            f"({MIN_BUDGETS - distinct} more needed)"
        )
    if sizes < MIN_SIZES:
        raise ConfigError(
            f"--sizes: a parabola per budget needs {MIN_SIZES} sizes, got {sizes} "
            f"({MIN_SIZES - sizes} more needed)"
        )
    if spread <= 1:
        raise ConfigError(f"--spread: must be > 1, got {spread}")
    if tokens_per_param <= 0:
        raise ConfigError(f"--tokens-per-param: must be > 0, got {tokens_per_param}")


def expected_optimum(
    budget: float, compute: ComputeModel, prior: ScalingFit | None, tokens_per_param: float
) -> float:
    """N* from a prior fit (with this study's compute convention), else from C = fpt(N)·r·N."""
    if prior is not None:
        return float(optimal_params(prior.law.coefficients(), budget, compute))

    def gap(log_n: float) -> float:
        n = math.exp(log_n)
        return math.log(float(compute.flops_per_token(n)) * tokens_per_param * n / budget)

    from scipy.optimize import brentq

    hi = math.log(max(budget / 6.0, 2.0))
    return math.exp(brentq(gap, -20.0, hi)) if gap(-20.0) < 0 < gap(hi) else 1.0


def plan_point(
    budget: float,
    target_params: float,
    base: RunConfig,
    vocab_size: int,
    rule: ShapeRule | None = None,
) -> PlanPoint:
    """The shape the rule builds for `target_params`, with the whole steps of the base's
    batch x seq_len that fit in `budget` FLOPs: an IsoFLOP trial, or the recipe for a
    recommended N (`recommend(fit, flops=C).params`) at budget C."""
    from tuner.models import flops_per_token  # torch: only when planning

    rule = rule or shape_rule_for(base.model)
    tokens_per_step = base.train.batch_size * base.train.seq_len
    model = rule.shape(target_params, base.model)
    params = int(rule.params(model.n_layer, model.d_model))
    fpt = flops_per_token(params, vocab_size, model, base.train.seq_len)
    steps = int(budget / fpt // tokens_per_step)
    return PlanPoint(budget, target_params, params, model, fpt, steps * tokens_per_step, steps)


def _smallest_fpt(rule: ShapeRule, base: RunConfig, vocab_size: int) -> float:
    return plan_point(1.0, rule.smallest_params(), base, vocab_size, rule).flops_per_token
