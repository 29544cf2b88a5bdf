"""Optuna's own plots on the dashboard page, where they help: the timeline (when several
workers shared the study), slice plots of the most important hyperparameters, and a contour
of the two that matter most.

Like every figure, they are drawn from gathered data (`DashboardData.optuna_trials`), never
from the storage: the trials are copied into an in-memory study that `optuna.visualization`
reads. Big studies are sampled so the page stays small and fast.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import optuna

from tuner.dashboards import DashboardData
from tuner.plotstyle import base_layout
from tuner.quiet import experimental_ok

if TYPE_CHECKING:
    import plotly.graph_objects as go

MAX_TIMELINE = 300
"""The most recent trials the timeline draws."""
MAX_POINTS = 500
"""Complete trials the slice and contour plots draw at most (a fixed random sample)."""
MAX_SLICES = 4
"""Slice plots drawn at most: the most important hyperparameters (Optuna orders them by name)."""
MIN_CONTOUR_TRIALS = 5
"""Below this many complete trials a contour is interpolated from almost nothing."""


def optuna_figures(data: DashboardData) -> dict[str, go.Figure]:
    """The Optuna plots that help for this study, keyed by their FIGURES id."""
    figs: dict[str, go.Figure] = {}
    if not data.optuna_trials:
        return figs
    metric = data.objectives[0][0]
    target = (lambda t: t.values[0]) if len(data.objectives) > 1 else None
    if data.max_running > 1:
        recent = _in_memory(data, data.optuna_trials[-MAX_TIMELINE:])
        with experimental_ok():
            figs["timeline"] = _styled(optuna.visualization.plot_timeline(recent))
    params = ranked_params(data)
    if not params:
        return figs
    complete = [t for t in data.optuna_trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) > MAX_POINTS:
        complete = random.Random(0).sample(complete, MAX_POINTS)
    sample = _in_memory(data, complete)
    fig = optuna.visualization.plot_slice(
        sample, params=params[:MAX_SLICES], target=target, target_name=metric
    )
    figs["slice"] = _styled(fig, height=380)
    if len(params) >= 2 and data.importance and len(data.complete) >= MIN_CONTOUR_TRIALS:
        fig = optuna.visualization.plot_contour(
            sample, params=params[:2], target=target, target_name=metric
        )
        figs["contour"] = _styled(fig, height=520)
    return figs


def ranked_params(data: DashboardData) -> list[str]:
    """Params that vary across complete trials, most important first (then space order)."""
    varying = [
        name
        for name in data.param_names
        if len({repr(t.params.get(name)) for t in data.complete if name in t.params}) > 1
    ]
    rank = {name: -data.importance.get(name, 0.0) for name in varying}
    return sorted(varying, key=lambda name: (rank[name], varying.index(name)))


def _in_memory(data: DashboardData, trials: list[optuna.trial.FrozenTrial]) -> optuna.Study:
    """Gathered trials in an in-memory study, the input Optuna's plots take (only the trials
    a plot draws: copying 10,000 trials would take longer than drawing them)."""
    study = optuna.create_study(
        study_name=data.study, directions=[direction for _, direction in data.objectives]
    )
    study.add_trials([_light(t) for t in trials])
    return study


def _light(trial: optuna.trial.FrozenTrial) -> optuna.trial.FrozenTrial:
    """The trial without its user attributes and curves, which no Optuna plot reads and which
    make copying slow."""
    return optuna.trial.FrozenTrial(
        number=trial.number,
        state=trial.state,
        value=None,
        values=trial.values,
        datetime_start=trial.datetime_start,
        datetime_complete=trial.datetime_complete,
        params=trial.params,
        distributions=trial.distributions,
        user_attrs={},
        system_attrs={},
        intermediate_values={},
        trial_id=trial.number,
    )


def _styled(fig: go.Figure, height: int = 460) -> go.Figure:
    """The page's look; the section heading replaces Optuna's title."""
    fig.update_layout(title=None, width=None)  # fit the page, not 300 px per subplot
    return base_layout(fig, height=height, legend={"orientation": "h", "y": -0.25})
