"""Optuna's own plots on the dashboard page: the timeline when several workers overlapped,
slices of the most important hyperparameters, the contour of the top two; drawn from the
gathered data and rendered in a real headless Chromium."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import optuna

from tests.test_dashboards import SPACE, chromium_or_skip, render_in_chromium, synthetic_trial
from tuner import figures_optuna
from tuner.dashboards import gather, max_overlap
from tuner.figures import FIGURES, figures
from tuner.page import render_html, write_dashboard
from tuner.space import parse_space
from tuner.study import StudyHandle

NEW = ("timeline", "slice", "contour")


def timed_handle(n_complete: int = 20, n_pruned: int = 4, overlap: bool = True) -> StudyHandle:
    """A synthetic study whose trials ran one after another, or two and three at a time."""
    space = parse_space(SPACE)
    rng = random.Random(1)
    states = optuna.trial.TrialState
    kinds = [(states.COMPLETE, "")] * n_complete + [
        (states.PRUNED, "pruned at milestone 1")
    ] * n_pruned
    rng.shuffle(kinds)
    trials = [synthetic_trial(rng, state, reason, space) for state, reason in kinds]
    start = datetime.now() - timedelta(hours=2)
    for i, trial in enumerate(trials):
        trial.datetime_start = start + timedelta(seconds=30 * i)
        trial.datetime_complete = trial.datetime_start + timedelta(seconds=70 if overlap else 25)
    study = optuna.create_study(study_name="timed", direction="minimize")
    study.add_trials(trials)
    return StudyHandle(study, space, "memory", "sqlite:///unused/mlflow.db", "1", "parent-run")


def test_max_overlap():
    assert max_overlap([]) == 0
    assert max_overlap([(0, 10)]) == 1
    assert max_overlap([(0, 10), (10, 20)]) == 1  # one ends as the next starts
    assert max_overlap([(0, 10), (5, 20), (6, 7), (30, 40)]) == 3


def test_several_workers_get_a_timeline_and_every_optuna_plot():
    data = gather(timed_handle())
    assert data.max_running == 3 and len(data.optuna_trials) == 24
    figs = figures_optuna.optuna_figures(data)
    assert set(figs) == set(NEW)
    bars = [trace for trace in figs["timeline"].data if trace.type == "bar"]
    assert sum(len(trace.y) for trace in bars) == 24  # one bar per trial
    ranked = figures_optuna.ranked_params(data)
    top = sorted(data.importance, key=data.importance.get, reverse=True)
    assert ranked[:2] == top[:2]
    layout = figs["contour"].layout
    assert {layout.xaxis.title.text, layout.yaxis.title.text} == set(top[:2])  # the top two
    axes = figs["slice"].layout.to_plotly_json()
    slice_axes = {v["title"]["text"] for k, v in axes.items() if k.startswith("xaxis")}
    assert slice_axes == set(ranked[: figures_optuna.MAX_SLICES])
    points = sum(len(t.x) for t in figs["slice"].data if t.type == "scatter")
    assert points == 20 * len(slice_axes)  # every complete trial, in every slice


def test_one_worker_no_timeline_few_trials_no_contour():
    data = gather(timed_handle(overlap=False))
    assert data.max_running == 1
    assert set(figures_optuna.optuna_figures(data)) == {"slice", "contour"}
    few = gather(timed_handle(n_complete=3, n_pruned=1))
    assert set(figures_optuna.optuna_figures(few)) == {"timeline", "slice"}


def test_page_holds_only_the_sections_drawn():
    data = gather(timed_handle(overlap=False))
    page = render_html(data, figures(data))
    assert 'id="fig-timeline"' not in page and 'id="fig-slice"' in page
    order = [key for key, _, _ in FIGURES if f'id="fig-{key}"' in page]
    assert order.index("slice") < order.index("contour") < order.index("parallel")


def test_optuna_plots_render_in_headless_chromium(isolated_stores):
    chromium_or_skip()
    path = write_dashboard(timed_handle())
    seen = render_in_chromium(path, isolated_stores / "page.png", isolated_stores / "profile")
    assert seen["errors"] == []
    for key in NEW:
        assert seen["counts"].get(f"fig-{key}", 0) >= 1, seen["counts"]


def test_big_studies_are_sampled(monkeypatch):
    monkeypatch.setattr(figures_optuna, "MAX_POINTS", 40)
    data = gather(timed_handle(n_complete=60, n_pruned=0))
    fig = figures_optuna.optuna_figures(data)["slice"]
    assert max(len(t.x) for t in fig.data if t.type == "scatter") == 40
