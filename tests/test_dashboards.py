"""Dashboards: the gathered data on a synthetic study, the page in a real headless Chromium,
and `tuner dashboard` on a real micro study."""

from __future__ import annotations

import math
import os
import random
import shutil
from pathlib import Path

import optuna
import pytest

import tuner.page
from tests.conftest import TINY_BASE
from tests.helpers import cli, write_space
from tuner import dashboards, figures
from tuner.config import ConfigError
from tuner.dashboards import gather, pareto_front
from tuner.page import publish, write_dashboard
from tuner.space import parse_space
from tuner.study import StudyHandle

SIZES = {"nano": 0.12e6, "micro": 0.8e6, "tiny": 3.2e6}
SPACE = {
    "name": "synthetic",
    "base": TINY_BASE,
    "sampler": "random",
    "pruner": "median",
    "objective": {"metric": "val_loss", "direction": "minimize"},
    "n_trials": 40,
    "params": {
        "learning_rate": {"low": 1e-4, "high": 1e-1, "log": True},
        "batch_size": {"choices": [8, 16, 32]},
        "seq_len": {"choices": [32, 64]},
        "dropout": {"choices": [0.0, 0.1]},
        "model_size": {"choices": list(SIZES)},
    },
}
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def synthetic_trial(
    rng: random.Random, state: optuna.trial.TrialState, reason: str = "", space=None
) -> optuna.trial.FrozenTrial:
    """A trial with everything objective.py records, from a made-up loss surface."""
    params = {
        "learning_rate": 10 ** rng.uniform(-4, -1),
        "batch_size": rng.choice([8, 16, 32]),
        "seq_len": rng.choice([32, 64]),
        "dropout": rng.choice([0.0, 0.1]),
        "model_size": rng.choice(list(SIZES)),
    }
    n_params = SIZES[params["model_size"]] * rng.uniform(0.9, 1.1)
    loss = 2.0 + 3e5 / n_params + 0.3 * abs(math.log10(params["learning_rate"]) + 2.5)
    loss += rng.uniform(0, 0.3)
    milestones = 4 if state == optuna.trial.TrialState.COMPLETE else rng.randint(1, 3)
    tokens = 8192 * milestones
    curve = [[8192 * (i + 1), loss + 1.5 / (i + 1) - 0.375] for i in range(milestones)]
    if reason.startswith("diverged"):
        curve[-1][1] = loss + 3.0
    wall = n_params * tokens * 6 / 2e10
    metrics = {
        "val_loss": curve[-1][1],
        "val_perplexity": math.exp(curve[-1][1]),
        "val_bpb": curve[-1][1] / math.log(2) / 3.5,
        "val_accuracy": 0.3,
        "train_loss": curve[-1][1] - 0.1,
    }
    cost = {
        "n_params": n_params,
        "train_flops": 6 * n_params * tokens,
        "wall_seconds": wall,
        "tokens_seen": tokens,
        "price_usd": wall / 3600 * 0.1,
        "device": "cpu",
    }
    config = {
        "model": {"arch": "gpt2", "size": params["model_size"]},
        "optim": {"lr": params["learning_rate"]},
        "train": {"batch_size": params["batch_size"]},
        "tokenizer": {"kind": "bpe", "vocab_size": 512},
    }
    attrs = {
        "config": config,
        "metrics": metrics,
        "cost": cost,
        "curve": curve,
        "mlflow_run_id": f"run{rng.getrandbits(64):016x}",
    }
    if reason:
        attrs["reason"] = reason
    complete = state == optuna.trial.TrialState.COMPLETE
    return optuna.trial.create_trial(
        state=state,
        value=curve[-1][1] if complete else None,
        params=params,
        distributions=space.distributions(),
        user_attrs=attrs,
        intermediate_values={i: v for i, (_, v) in enumerate(curve)},
    )


def synthetic_handle(
    n_complete: int = 24,
    n_pruned: int = 6,
    n_diverged: int = 2,
    n_failed: int = 1,
    n_running: int = 1,
    seed: int = 0,
) -> StudyHandle:
    """An in-memory study shaped like a real one, outcomes interleaved; no training."""
    space = parse_space(SPACE)
    rng = random.Random(seed)
    states = optuna.trial.TrialState
    kinds = (
        [(states.COMPLETE, "")] * n_complete
        + [(states.PRUNED, "pruned at milestone 1")] * n_pruned
        + [(states.PRUNED, "diverged: train loss nan at step 3")] * n_diverged
        + [(states.FAIL, "RuntimeError: boom")] * n_failed
    )
    rng.shuffle(kinds)
    study = optuna.create_study(study_name="synthetic", direction="minimize")
    study.add_trials([synthetic_trial(rng, state, reason, space) for state, reason in kinds])
    for _ in range(n_running):
        study.ask()
    return StudyHandle(study, space, "memory", "sqlite:///unused/mlflow.db", "1", "parent-run")


def dominated(point: tuple[float, float], others: list[tuple[float, float]]) -> bool:
    return any(o[0] <= point[0] and o[1] <= point[1] and o != point for o in others)


# ---------------------------------------------------------------- gathered data


def test_one_point_per_complete_trial_running_counted_not_drawn():
    data = gather(synthetic_handle())
    assert len(data.complete) == 24
    assert len({t.number for t in data.complete}) == 24
    assert len(data.trials) == 24 + 6 + 2 + 1  # finished only
    assert data.running == 1
    assert data.counts() == {
        "complete": 24,
        "pruned": 6,
        "diverged": 2,
        "failed": 1,
        "running": 1,
        "waiting": 0,
    }
    assert data.history.numbers == [t.number for t in data.complete]
    assert data.metric == "val_perplexity"  # one tokenizer: perplexities compare


def test_pareto_front_is_exactly_the_non_dominated_points():
    data = gather(synthetic_handle(n_complete=60, seed=3))
    assert data.cost_keys == ["train_flops", "wall_seconds", "price_usd"]
    for key in ["n_params", *data.cost_keys]:
        points = {t.number: (t.metric(key), t.metric(data.metric)) for t in data.complete}
        expected = {n for n, p in points.items() if not dominated(p, list(points.values()))}
        assert set(data.fronts[key]) == expected, key
        xs = [points[n][0] for n in data.fronts[key]]
        ys = [points[n][1] for n in data.fronts[key]]
        assert xs == sorted(xs) and ys == sorted(ys, reverse=True)  # a staircase down
    assert 1 < len(data.fronts["n_params"]) < len(data.complete)


def test_pareto_front_ties_and_missing_values():
    points = [
        (0, 1.0, 5.0),
        (1, 1.0, 4.0),
        (2, 2.0, 4.0),
        (3, 3.0, 1.0),
        (4, 3.0, 1.0),
        (5, None, 0.1),
        (6, 0.5, None),
    ]
    assert pareto_front(points) == [1, 3, 4]  # 0 beaten at equal x, 2 at equal y; equal twins stay
    assert pareto_front([]) == []


def test_cumulative_cost_is_monotone_and_counts_every_finished_trial():
    handle = synthetic_handle()
    data = gather(handle)
    for key in data.cost_keys:
        spent = data.history.cumulative[key]
        assert len(spent) == len(data.complete)
        assert all(b >= a for a, b in zip(spent, spent[1:], strict=False))
        last = data.history.numbers[-1]
        paid = sum(t.metric(key) for t in data.trials if t.number <= last)
        assert spent[-1] == pytest.approx(paid)  # pruned and failed trials cost too
    best = data.history.best
    assert best == [min(data.history.values[: i + 1]) for i in range(len(best))]


def test_pruned_and_diverged_trials_are_flagged():
    data = gather(synthetic_handle())
    outcomes = {t.number: t.outcome for t in data.trials}
    pruned = [t for t in data.trials if t.outcome == "pruned"]
    diverged = [t for t in data.trials if t.outcome == "diverged"]
    assert len(pruned) == 6 and all(t.stopped_early and t.state == "PRUNED" for t in pruned)
    assert len(diverged) == 2 and all(t.reason.startswith("diverged") for t in diverged)
    assert list(outcomes.values()).count("failed") == 1
    assert not any(t.stopped_early for t in data.complete)
    ranked = [data.by_number()[n] for n in data.top]
    assert all(t.outcome == "complete" for t in ranked)
    assert [t.values[0] for t in ranked] == sorted(t.values[0] for t in ranked)
    assert ranked[0].values[0] == min(data.history.values)


def test_importance_needs_enough_trials():
    few = gather(synthetic_handle(n_complete=3, n_pruned=0, n_diverged=0, n_failed=0))
    assert few.importance == {} and "at least 5 complete trials" in few.importance_note
    many = gather(synthetic_handle(n_complete=40))
    assert set(many.importance) <= set(SPACE["params"]) and many.importance
    assert sum(many.importance.values()) == pytest.approx(1.0)


def test_curves_are_subsampled_with_the_best_kept(monkeypatch):
    monkeypatch.setattr(dashboards, "MAX_CURVES", 10)
    data = gather(synthetic_handle(n_complete=40))
    assert len(data.curves) == 10
    assert data.top[0] in data.curves


def test_bits_per_byte_when_tokenizers_differ():
    handle = synthetic_handle(n_pruned=0, n_diverged=0, n_failed=0, n_running=0)
    assert gather(handle).metric == "val_perplexity"
    trials = handle.study.get_trials()
    trials[0].user_attrs = {**trials[0].user_attrs, "config": {"tokenizer": {"kind": "byte"}}}
    handle.study = optuna.create_study()
    handle.study.add_trials(trials)
    assert gather(handle).metric == "val_bpb"


def test_multi_objective_study_ranks_and_draws_on_the_first_objective():
    single = synthetic_handle(n_running=0)
    raw = {
        **SPACE,
        "pruner": "none",
        "objective": [
            {"metric": "val_loss", "direction": "minimize"},
            {"metric": "n_params", "direction": "minimize"},
        ],
    }
    study = optuna.create_study(directions=["minimize", "minimize"])
    for t in single.study.get_trials():
        if t.state == optuna.trial.TrialState.COMPLETE:
            t.values = [t.value, t.user_attrs["cost"]["n_params"]]
        study.add_trial(t)
    handle = StudyHandle(study, parse_space(raw), "memory", "sqlite:///unused.db", "1", "p")
    data = gather(handle)
    assert data.objectives == [("val_loss", "minimize"), ("n_params", "minimize")]
    assert [data.by_number()[n].values[0] for n in data.top] == sorted(
        t.values[0] for t in data.complete
    )[: dashboards.TOP_N]
    assert data.importance  # of the first objective
    drawn = figures.figures(data)  # every figure but the timeline (trials never overlapped)
    assert set(drawn) == {key for key, _, _ in figures.FIGURES} - {"timeline"}


def test_empty_study_gives_a_clear_message():
    handle = synthetic_handle(n_complete=0, n_pruned=2, n_diverged=0, n_failed=1)
    expected = r"no complete trials yet \(1 running, 2 pruned, 1 failed\)"
    with pytest.raises(ConfigError, match=expected):
        gather(handle)
    assert publish(handle) is None
    assert not Path("dashboards").exists()


def test_page_holds_every_figure_and_plotly_inline(isolated_stores):
    path = write_dashboard(synthetic_handle())
    assert path == Path("dashboards/synthetic.html")
    page = path.read_text()
    for key, title, _ in figures.FIGURES:
        if key == "timeline":  # one worker: trials never overlapped, no timeline
            assert 'id="fig-timeline"' not in page
            continue
        assert f'id="fig-{key}"' in page and title in page
    assert "<script src=" not in page and "Plotly.newPlot" in page  # works offline
    assert "trial " in page and "learning_rate=" in page  # hover text


# ---------------------------------------------------------------- CLI on a real micro study


def test_cli_dashboard_on_a_real_micro_study(isolated_stores):
    space = write_space(isolated_stores / "space.yaml", n_trials=2)
    result = cli("study", "create", "micro", "--space", str(space))
    assert result.exit_code == 0, result.output
    assert Path("dashboards/micro.html").is_file()  # redrawn when the study finished
    result = cli("dashboard", "micro", "-o", "out/page.html")
    assert result.exit_code == 0, result.output
    page = Path("out/page.html").read_text()
    # two trials of one worker: no timeline, no contour (too few trials for importance)
    assert page.count('class="plotly-graph-div"') == len(figures.FIGURES) - 2
    from tuner.study import load_study

    handle = load_study("micro")
    for trial in handle.study.get_trials():
        assert trial.user_attrs["mlflow_run_id"] in page  # the top-trials table
    client = handle.tracker().client
    logged = [a.path for a in client.list_artifacts(handle.parent_run_id, "dashboards")]
    assert logged == ["dashboards/micro.html"]


def test_a_dashboard_failure_never_fails_a_study_run(isolated_stores, monkeypatch):
    space = write_space(isolated_stores / "space.yaml", n_trials=1)
    assert cli("study", "create", "once", "--space", str(space), "--no-run").exit_code == 0

    def broken(handle):
        raise RuntimeError("no disk")

    monkeypatch.setattr(tuner.page, "publish", broken)
    result = cli("study", "resume", "once", "--n-trials", "1")
    assert result.exit_code == 0, result.output
    assert "dashboard not updated: no disk" in result.output


def test_cli_dashboard_without_complete_trials_is_one_line(isolated_stores):
    space = write_space(isolated_stores / "space.yaml")
    assert cli("study", "create", "empty", "--space", str(space), "--no-run").exit_code == 0
    result = cli("dashboard", "empty")
    assert result.exit_code == 2
    assert "no complete trials yet" in result.output and "Traceback" not in result.output
    assert cli("dashboard", "nosuch").exit_code == 2


# ---------------------------------------------------------------- real headless Chromium


def chromium_or_skip() -> str:
    """Chromium's path; a skip locally without it, a failure in CI (CI=true)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        path = None
    if path is None:
        message = "headless browser test needs Debian's chromium and the playwright package"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def render_in_chromium(page_path: Path, screenshot: Path, profile: Path) -> dict:
    """Open the page offline; return plot counts per figure and console errors."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=chromium_or_skip(),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 900},
            offline=True,
        )
        try:
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_path.resolve().as_uri(), timeout=120_000)  # a loaded machine
            page.wait_for_function(
                "document.querySelectorAll('.plotly-graph-div').length > 0 && "
                "[...document.querySelectorAll('.plotly-graph-div')]"
                ".every(d => d.querySelector('.main-svg'))",
                timeout=30_000,
            )
            counts = page.evaluate(
                "Object.fromEntries([...document.querySelectorAll("
                "'.plotly-graph-div')].map(d => [d.id, "
                "d.querySelectorAll('.main-svg').length]))"
            )
            marks = page.evaluate("document.querySelectorAll('#fig-params .point').length")
            point = page.locator("#fig-params .scatterlayer .trace:last-child .point").first
            box = point.bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.wait_for_selector("#fig-params .hoverlayer .hovertext", timeout=10_000)
            hover = page.locator("#fig-params .hoverlayer .hovertext").first.text_content()
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            context.close()
    return {"counts": counts, "errors": errors, "points": marks, "hover": hover}


def test_every_plot_renders_in_headless_chromium(isolated_stores):
    chromium_or_skip()
    handle = synthetic_handle(n_complete=30)
    path = write_dashboard(handle)
    shot = isolated_stores / "dashboard.png"
    seen = render_in_chromium(path, shot, isolated_stores / "chromium-profile")
    assert seen["errors"] == []
    assert set(seen["counts"]) == {f"fig-{k}" for k, _, _ in figures.FIGURES if k != "timeline"}
    assert all(n >= 1 for n in seen["counts"].values()), seen["counts"]
    data = gather(handle)
    drawn = sum(t.metric(data.metric) is not None for t in data.trials)
    assert seen["points"] == drawn + len(data.fronts["n_params"])  # every trial, plus the front
    for part in ("trial ", "complete", "learning_rate=", "model_size=", "ppl ", "params"):
        assert part in seen["hover"]  # hover: trial number, params and metrics
    assert shot.stat().st_size > 50_000
    shutil.copyfile(shot, "/tmp/tuner-dashboard.png")
