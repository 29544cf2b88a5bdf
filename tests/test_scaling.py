"""Scaling laws: recovery of a known law, approach 2's exponents, recommendation math, the CSV
loader's errors, the shape rule against built models, and IsoFLOP planning."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import numpy as np
import pytest

from tuner.config import ConfigError, RunConfig, apply_overrides, from_dict
from tuner.models import build_model, count_params, flops_per_token
from tuner.scaling import (
    ComputeModel,
    ScalingFit,
    ShapeRule,
    chinchilla_optimum,
    compute_model_for,
    fit_approach2,
    fit_scaling_law,
    load_csv,
    make_points,
    plan_isoflop,
    plan_point,
    recommend,
    shape_rule_for,
)
from tuner.scaling.law import predict
from tuner.scaling.recommend import optimal_params

# Hoffmann et al.'s law, rounded (Besiroglu et al. 2024 use it for their checks too)
TRUE = {"E": 1.7, "A": 400.0, "B": 410.0, "alpha": 0.34, "beta": 0.28}
TRUE_COEFS = np.array(list(TRUE.values()))


def random_design(n: int, noise: float, seed: int):
    """Points scattered over four decades of N and D, log-normal noise on the loss."""
    rng = np.random.default_rng(seed)
    params, tokens = 10 ** rng.uniform(7, 10, n), 10 ** rng.uniform(8, 12, n)
    loss = predict(TRUE_COEFS, params, tokens) * np.exp(rng.normal(0, noise, n))
    return make_points(params, loss, tokens=tokens)


def isoflop_design(budgets, sizes: int, span: float, noise: float, seed: int):
    """IsoFLOP curves: per budget, N log-uniform within span x of the true optimum."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in budgets:
        n_opt, _ = chinchilla_optimum(TRUE_COEFS, c)
        for n in n_opt[0] * span ** np.linspace(-1, 1, sizes):
            rows.append((n, c / (6 * n), c))
    params, tokens, flops = map(np.array, zip(*rows, strict=True))
    loss = predict(TRUE_COEFS, params, tokens) * np.exp(rng.normal(0, noise, len(rows)))
    return make_points(params, loss, tokens=tokens, flops=flops)


@pytest.fixture(scope="module")
def synthetic_fit() -> ScalingFit:
    return fit_scaling_law(random_design(300, 0.01, seed=0), n_bootstrap=40, seed=0)


def test_law_recovers_known_coefficients_and_intervals_cover_them(synthetic_fit):
    law = synthetic_fit.law
    assert abs(law.alpha - TRUE["alpha"]) < 0.02
    assert abs(law.beta - TRUE["beta"]) < 0.02
    assert abs(law.E - TRUE["E"]) < 0.02
    intervals = law.intervals()
    assert len(law.samples) == 40
    for name, truth in TRUE.items():
        low, high = intervals[name]
        assert low <= truth <= high, (name, low, high)
        assert low < getattr(law, name) < high
    truth_a = TRUE["beta"] / (TRUE["alpha"] + TRUE["beta"])
    assert intervals["a"][0] <= truth_a <= intervals["a"][1]
    assert synthetic_fit.law.residuals["log_rmse"] == pytest.approx(0.01, rel=0.2)
    # random points are no IsoFLOP design: approach 2 is skipped with a reason, not a crash
    assert synthetic_fit.approach2 is None
    assert any("approach 2 skipped" in w for w in synthetic_fit.warnings)


def test_fit_json_round_trip_and_top_level_numbers(synthetic_fit):
    data = json.loads(json.dumps(synthetic_fit.to_json()))
    for name in ("E", "A", "B", "alpha", "beta"):
        assert isinstance(data[name], float)
        assert data["intervals"][name][0] < data[name] < data["intervals"][name][1]
    assert data["n_points"] == 300
    assert data["compute"]["convention"] == "6N"
    again = ScalingFit.from_json(data)
    assert again.summary() == synthetic_fit.summary()
    first, second = recommend(synthetic_fit, flops=1e21), recommend(again, flops=1e21)
    assert first.to_json() == second.to_json()
    assert "alpha" in synthetic_fit.summary() and "residuals" in synthetic_fit.summary()
    with pytest.raises(ConfigError, match="scaling fit JSON"):
        ScalingFit.from_json({"E": 1.0})


def test_approach2_recovers_the_exponents_of_an_isoflop_sweep():
    points = isoflop_design(np.logspace(18, 22, 5), sizes=7, span=4.0, noise=0.002, seed=1)
    fit = fit_scaling_law(points, n_bootstrap=30, approach2="require")
    iso = fit.approach2
    assert iso is not None and iso.params_opt is not None and iso.tokens_opt is not None
    truth_a = TRUE["beta"] / (TRUE["alpha"] + TRUE["beta"])
    assert abs(iso.params_opt.exponent - truth_a) < 0.01
    assert abs(iso.tokens_opt.exponent - (1 - truth_a)) < 0.01
    low, high = iso.params_opt.exponent_interval
    assert low < iso.params_opt.exponent < high
    for curve in iso.curves:  # each vertex near the true optimum of its budget
        n_true, d_true = chinchilla_optimum(TRUE_COEFS, curve.flops)
        assert curve.params_opt == pytest.approx(n_true[0], rel=0.15)
        assert curve.tokens_opt == pytest.approx(d_true[0], rel=0.15)
    assert abs(fit.law.alpha - TRUE["alpha"]) < 0.02  # approach 3 on the same points
    assert "N_opt" in fit.summary()


def test_approach2_needs_budgets_and_sizes_and_warns_on_bad_parabolas():
    one_budget = isoflop_design([1e20], sizes=5, span=4.0, noise=0.0, seed=0)
    with pytest.raises(ConfigError, match=r"found 1 \(1 more needed\)"):
        fit_approach2(one_budget)
    two_sizes = isoflop_design([1e19, 1e20], sizes=2, span=4.0, noise=0.0, seed=0)
    with pytest.raises(ConfigError, match=r"has 2 \(1 more needed\)"):
        fit_approach2(two_sizes)
    with pytest.raises(ConfigError):
        fit_scaling_law(two_sizes, n_bootstrap=0, approach2="require")
    # a budget sampled only on one side of its optimum: the vertex lies outside; one budget
    # upside down: both are left out with a warning, and the fit goes on
    good = isoflop_design([1e19, 1e20, 1e21], sizes=5, span=4.0, noise=0.0, seed=0)
    params, tokens, flops, loss = good.params, good.tokens, good.flops, good.loss.copy()
    n_opt, _ = chinchilla_optimum(TRUE_COEFS, 1e22)
    side = n_opt[0] * np.array([8.0, 12.0, 16.0])
    upside = [1e18] * 3
    n_up, _ = chinchilla_optimum(TRUE_COEFS, 1e18)
    up_params = n_up[0] * np.array([0.5, 1.0, 2.0])
    params = np.concatenate([params, side, up_params])
    tokens = np.concatenate([tokens, 1e22 / (6 * side), 1e18 / (6 * up_params)])
    flops = np.concatenate([flops, [1e22] * 3, upside])
    up_loss = predict(TRUE_COEFS, up_params, 1e18 / (6 * up_params))
    loss = np.concatenate(
        [loss, predict(TRUE_COEFS, side, 1e22 / (6 * side)), up_loss + [0.0, 0.5, 0.0]]
    )
    iso = fit_approach2(make_points(params, loss, tokens=tokens, flops=flops), n_bootstrap=20)
    notes = " ".join(iso.warnings)
    assert "opens downward" in notes and "outside the sampled range" in notes
    assert len([c for c in iso.curves if c.params_opt is not None]) == 3
    assert iso.params_opt is not None


def test_closed_form_optimum_matches_brute_force():
    for flops in (1e18, 1e21, 1e24):
        n_opt, d_opt = chinchilla_optimum(TRUE_COEFS, flops)
        grid = np.logspace(3, math.log10(flops / 6) - 1, 400_001)
        brute = grid[np.argmin(predict(TRUE_COEFS, grid, flops / (6 * grid)))]
        assert n_opt[0] == pytest.approx(brute, rel=1e-3)
        assert n_opt[0] * d_opt[0] * 6 == pytest.approx(flops)
    # ... and tuner's convention, solved numerically, against brute force on its own curve
    compute = ComputeModel.tuner(ShapeRule("gpt2"), vocab_size=2048, seq_len=128)
    for flops in (1e12, 1e15):
        grid = np.logspace(2, math.log10(flops / 6) - 1, 400_001)
        tokens = flops / compute.flops_per_token(grid)
        brute = grid[np.argmin(predict(TRUE_COEFS, grid, tokens))]
        assert optimal_params(TRUE_COEFS, flops, compute) == pytest.approx(brute, rel=1e-3)


def test_recommendations_solve_for_what_is_not_given(synthetic_fit):
    fit = synthetic_fit
    best = recommend(fit, flops=1e21)
    assert 6 * best.params * best.tokens == pytest.approx(1e21)
    low, high = best.loss_interval
    assert low < best.loss < high
    assert best.params_interval[0] < best.params < best.params_interval[1]
    assert best.tokens_per_param == pytest.approx(best.tokens / best.params)
    assert not best.warnings  # 1e21 lies inside the fitted compute range
    # at a fixed budget, any other size predicts a higher loss
    for other in (best.params / 2, best.params * 2):
        assert recommend(fit, flops=1e21, params=other).loss > best.loss
    fixed_tokens = recommend(fit, flops=1e21, tokens=best.tokens)
    assert fixed_tokens.params == pytest.approx(best.params, rel=1e-9)
    # N alone: the budget for which N is compute-optimal
    alone = recommend(fit, params=best.params)
    assert alone.flops == pytest.approx(1e21, rel=1e-6)
    assert recommend(fit, tokens=best.tokens).params == pytest.approx(best.params, rel=1e-6)
    both = recommend(fit, params=1e8, tokens=1e10)
    assert both.loss == pytest.approx(float(fit.predict(1e8, 1e10)))
    assert both.flops == pytest.approx(6e18)
    data = best.to_json()
    assert {"params", "tokens", "loss"} <= data.keys() and data["approach2"]["params"] is None
    far = recommend(fit, flops=1e30)
    assert len(far.warnings) == 3 and all("outside the fitted range" in w for w in far.warnings)
    assert "extrapolation" in far.summary()
    for bad in ({}, {"flops": 1e20, "params": 1e8, "tokens": 1e9}, {"flops": -1.0}):
        with pytest.raises(ConfigError):
            recommend(fit, **bad)


def test_csv_loader_reads_flops_or_tokens(tmp_path):
    rows = ["n,flops,d,loss"] + [
        f"{n},{6 * n * 1e9},1e9,{2 + i / 10}" for i, n in enumerate([1e6, 2e6, 4e6, 8e6, 1.6e7])
    ]
    path = tmp_path / "runs.csv"
    path.write_text("\n".join(rows) + "\n\n")
    points = load_csv(path, params_column="n", flops_column="flops", loss_column="loss")
    assert np.allclose(points.tokens, 1e9) and len(points) == 5
    by_tokens = load_csv(path, params_column="n", tokens_column="d", loss_column="loss")
    assert np.allclose(by_tokens.flops, 6 * by_tokens.params * 1e9)


@pytest.mark.parametrize(
    ("text", "columns", "message"),
    [
        (
            "n,d,loss\n" + "1,2,3\n" * 5,
            {"loss_column": "val"},
            "--loss-column 'val' is not a column",
        ),
        ("n,d,loss\n" + "1,2,3\n" * 4 + "1,x,3\n", {}, "line 6, column 'd': 'x' is not a number"),
        ("n,d,loss\n1,2,0\n" + "1,2,3\n" * 4, {}, "line 2, column 'loss': '0' must be"),
        ("n,d,loss\n" + "1,2,3\n" * 4 + "-5,2,3\n", {}, "line 6, column 'n': '-5' must be"),
        ("n,d,loss\n" + "1,2,nan\n" + "1,2,3\n" * 4, {}, "line 2, column 'loss'"),
        ("n,d,loss\n" + "1,2,3\n" * 3, {}, "3 data rows; the fit needs at least 5"),
        ("n,d,loss\n" + "1,2\n" * 5, {}, "line 2, column 'loss': '' is not a number"),
        ("", {}, "empty file"),
        ("n,d,loss\n" + "1,2,3\n" * 5, {"tokens_column": None}, "give one of them"),
    ],
)
def test_csv_bad_input_is_one_config_error(tmp_path, text, columns, message):
    path = tmp_path / "runs.csv"
    path.write_text(text)
    kwargs = {"params_column": "n", "tokens_column": "d", "loss_column": "loss"} | columns
    with pytest.raises(ConfigError) as err:
        load_csv(path, **kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_csv_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_csv(tmp_path / "nope.csv", params_column="n", tokens_column="d", loss_column="l")


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_shape_rule_counts_match_built_models(arch):
    rule = ShapeRule(arch)
    for target in (1e5, 1e6, 3e6):
        model_cfg = rule.shape(target)
        assert model_cfg.size == "custom" and model_cfg.d_model % rule.head_dim == 0
        assert model_cfg.n_head == model_cfg.d_model // rule.head_dim
        _, non_embedding = count_params(build_model(model_cfg, vocab_size=300, seq_len=16))
        assert non_embedding == rule.params(model_cfg.n_layer, model_cfg.d_model)
        assert non_embedding == pytest.approx(target, rel=0.1 if target >= 1e6 else 0.35)
        aspect = model_cfg.d_model / model_cfg.n_layer
        assert rule.aspect_ratio / 2 <= aspect <= rule.aspect_ratio * 2


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_shape_rule_with_a_fixed_depth(arch):
    rule = ShapeRule(arch, head_dim=8, n_layer=2)
    widths = []
    for target in (2e3, 5e3, 2e4, 8e4):
        model_cfg = rule.shape(target)
        assert model_cfg.n_layer == 2 and model_cfg.d_model % 8 == 0
        n = rule.params(2, model_cfg.d_model)
        _, non_embedding = count_params(build_model(model_cfg, vocab_size=100, seq_len=16))
        assert non_embedding == n
        layers, width = rule.continuous(n)  # the inverse of params at a fixed depth
        assert float(layers) == 2 and float(width) == pytest.approx(model_cfg.d_model)
        widths.append(model_cfg.d_model)
    assert widths == sorted(widths) and len(set(widths)) == 4
    assert rule.smallest_params() == rule.params(2, 8)


def test_tuner_compute_model_tracks_flops_per_token():
    """The smooth FLOP curve the recommendation uses stays close to the exact count of the
    shapes the rule builds."""
    rule = ShapeRule("gpt2")
    compute = ComputeModel.tuner(rule, vocab_size=2048, seq_len=128)
    for target in (3e5, 3e6, 3e7):
        cfg = rule.shape(target)
        n = int(rule.params(cfg.n_layer, cfg.d_model))
        exact = flops_per_token(n, 2048, cfg, 128)
        assert float(compute.flops_per_token(n)) == pytest.approx(exact, rel=0.1)
    assert ComputeModel.from_json(compute.to_json()) == compute


@pytest.fixture
def base() -> RunConfig:
    return from_dict(
        RunConfig,
        {
            "model": {"arch": "gpt2", "size": "tiny", "dropout": 0.1},
            "train": {"batch_size": 8, "seq_len": 64, "milestones": 2},
        },
    )


def test_isoflop_plan_spends_each_budget_in_whole_steps(base):
    plan = plan_isoflop([3e12, 1e13, 3e13], base, vocab_size=512, sizes=5)
    budgets = sorted({p.budget for p in plan.points})
    assert budgets == [3e12, 1e13, 3e13]
    tokens_per_step = 8 * 64
    for point in plan.points:
        assert point.tokens == point.steps * tokens_per_step and point.steps >= 2
        assert point.budget - tokens_per_step * point.flops_per_token < point.flops <= point.budget
        assert point.model.dropout == 0.1 and point.model.size == "custom"
        built = build_model(point.model, vocab_size=512, seq_len=64)
        _, non_embedding = count_params(built)
        assert non_embedding == point.params
        assert point.flops_per_token == flops_per_token(non_embedding, 512, point.model, 64)
    for budget in budgets:
        curve = [p for p in plan.points if p.budget == budget]
        assert len(curve) >= 3 and len({p.model for p in curve}) == len(curve)
        assert [p.params for p in curve] == sorted(p.params for p in curve)
    overrides = plan.points[0].overrides()
    assert (
        overrides["model.size"] == "custom" and overrides["train.tokens"] == plan.points[0].tokens
    )


def test_isoflop_plan_centres_on_a_prior_fit(base, synthetic_fit):
    rule = shape_rule_for(base.model)
    plan = plan_isoflop([1e13, 1e14], base, vocab_size=512, prior=synthetic_fit, rule=rule)
    compute = compute_model_for(base, 512, rule)
    assert compute == ComputeModel.tuner(rule, 512, 64)
    for budget in (1e13, 1e14):
        center = optimal_params(synthetic_fit.law.coefficients(), budget, compute)
        targets = sorted(p.target_params for p in plan.points if p.budget == budget)
        assert targets[len(targets) // 2] == pytest.approx(center, rel=1e-6)


def test_recipe_point_for_a_recommendation(base, synthetic_fit):
    """A recommended N under tuner's convention becomes a buildable shape and whole steps."""
    rule = shape_rule_for(base.model)
    fit = dataclasses.replace(synthetic_fit, compute=compute_model_for(base, 512, rule))
    best = recommend(fit, flops=1e15)
    assert best.flops == pytest.approx(1e15)
    assert best.tokens * float(fit.compute.flops_per_token(best.params)) == pytest.approx(1e15)
    point = plan_point(1e15, best.params, base, vocab_size=512)
    assert point.params == pytest.approx(best.params, rel=0.15)
    assert point.flops <= 1e15 and point.tokens % (8 * 64) == 0
    config = apply_overrides(base, list(point.overrides().items()))
    assert config.model.n_layer == point.model.n_layer and config.train.tokens == point.tokens


@pytest.mark.parametrize(
    ("budgets", "kwargs", "message"),
    [
        ([1e13], {}, r"2 distinct budgets, got 1 \(1 more needed\)"),
        ([1e13, 1e13], {}, "(1 more needed)"),
        ([1e12, 1e13], {"sizes": 2}, r"needs 3 sizes, got 2 \(1 more needed\)"),
        ([1e6, 1e13], {}, re.escape("--budgets: 1e+06 FLOPs leaves 0 trainable sizes")),
        ([0.0, 1e13], {}, "must be a number > 0"),
        ([1e12, 1e13], {"spread": 1.0}, "--spread"),
    ],
)
def test_isoflop_plan_bad_input(base, budgets, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        plan_isoflop(budgets, base, vocab_size=512, **kwargs)


def test_shape_rule_rejects_recurrent_models():
    with pytest.raises(ConfigError, match="gpt2 or llama"):
        shape_rule_for(from_dict(RunConfig, {"model": {"arch": "lstm"}}).model)
