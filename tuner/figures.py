"""Dashboards, the draw step: gathered data (tuner.dashboards) -> plotly figures.

Nothing here reads the study: every number comes from `DashboardData`, so a wrong number is a
gather bug. Points carry their trial number; the page (tuner.page) holds each trial's hover
text once. Big studies stay small and fast: scatters switch to WebGL, numbers travel as typed
arrays and learning curves are subsampled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tuner import metrics
from tuner.dashboards import DashboardData, TrialPoint
from tuner.figures_optuna import optuna_figures
from tuner.figures_space import fig_importance, fig_lr_batch, fig_parallel, fig_tasks, fig_top
from tuner.plotstyle import (
    FRONT_COLOR,
    OUTCOME_STYLE,
    PALETTE,
    base_layout,
    menu,
    message,
    scatter_type,
    trial_hover,
)
from tuner.units import plural, si

if TYPE_CHECKING:
    import plotly.graph_objects as go

FIGURES = (  # id, title, caption
    (
        "params",
        "Perplexity against model size",
        "Every complete trial; the line is the Pareto front (no trial is both smaller and better). "
        "Pruned and diverged trials, trained for fewer tokens, are the grey and red crosses.",
    ),
    (
        "cost",
        "Perplexity against cost",
        "Choose the cost with the menu; the line is the Pareto front for that cost.",
    ),
    (
        "history",
        "Optimisation history",
        "The objective of each complete trial and the best so far, against trial number and "
        "against the cost of all finished trials up to it (pruned and failed trials cost too).",
    ),
    (
        "timeline",
        "Timeline",
        "When each trial ran, one bar per trial coloured by its state (optuna.visualization): "
        "drawn when several workers shared the study, so idle or lost workers show as gaps.",
    ),
    (
        "curves",
        "Learning curves",
        "Validation loss against tokens seen. Pruned (grey) and diverged (red) trials are dimmed, "
        "with a cross where they stopped.",
    ),
    (
        "importance",
        "Hyperparameter importance",
        "How much each hyperparameter explains the objective (PED-ANOVA, optuna.importance).",
    ),
    (
        "slice",
        "Slices",
        "The objective against each of the (up to four) most important hyperparameters; colour "
        "is the trial number, so later trials show where the sampler went "
        "(optuna.visualization).",
    ),
    (
        "contour",
        "Contour of the two most important hyperparameters",
        "The objective interpolated over the two hyperparameters that explain it most; dots are "
        "complete trials (optuna.visualization).",
    ),
    (
        "parallel",
        "Parallel coordinates",
        "One line per complete trial across the hyperparameters and the objective; drag on an "
        "axis to filter.",
    ),
    (
        "lr_batch",
        "Learning rate against batch size",
        "Colour is the objective; batch sizes are spread a little sideways so points do not hide.",
    ),
    (
        "tasks",
        "Downstream tasks against perplexity",
        "Each task score (eval.tasks) of every complete trial against its perplexity: the lower "
        "perplexity is not always the better model for the task. Pick the score with the menu.",
    ),
    ("top", "Top trials", "Best complete trials on the first objective, with their MLflow runs."),
)


def figures(data: DashboardData) -> dict[str, go.Figure]:
    """One figure per section of the page, keyed by the ids in FIGURES; Optuna's timeline,
    slice and contour plots only where they help (tuner.figures_optuna).

    Points carry their trial number in `customdata`; the page fills in each trial's hover
    text from one shared table, so a 10,000-trial page holds that text once, not five times.
    """
    draw = {
        "params": fig_params,
        "cost": fig_cost,
        "history": fig_history,
        "curves": fig_curves,
        "importance": fig_importance,
        "parallel": fig_parallel,
        "lr_batch": fig_lr_batch,
        "tasks": fig_tasks,
        "top": fig_top,
    }
    figs = {key: draw[key](data) for key, _, _ in FIGURES if key in draw}
    figs.update(optuna_figures(data))
    return figs


def _trial_groups(data: DashboardData) -> list[tuple[str, list[TrialPoint]]]:
    """Complete trials by model size (small to large), then early-stopped trials by outcome."""
    groups: dict[str, list[TrialPoint]] = {}
    for t in data.trials:
        if t.metric(data.metric) is not None:
            groups.setdefault(t.group if t.state == "COMPLETE" else t.outcome, []).append(t)
    order = [*OUTCOME_STYLE, *_group_order(data)]  # early-stopped first: drawn underneath
    return [(key, groups[key]) for key in order if key in groups]


def _xs(points: Sequence[TrialPoint], key: str) -> Any:
    import numpy as np

    return np.array([t.metric(key) or np.nan for t in points], dtype=float)


def _trial_traces(
    data: DashboardData, x_key: str, groups: list[tuple[str, list[TrialPoint]]]
) -> list:
    import numpy as np

    trace = scatter_type(len(data.trials))
    colours = dict(zip(_group_order(data), PALETTE * 4, strict=False))
    traces = []
    for key, pts in groups:
        color, symbol, opacity = OUTCOME_STYLE.get(key, (colours.get(key), "circle", 0.85))
        traces.append(
            trace(
                x=_xs(pts, x_key),
                y=np.array([t.metric(data.metric) for t in pts], dtype=float),
                mode="markers",
                name=key if key not in OUTCOME_STYLE else f"{key} (partial)",
                legendrank=2000 if key in OUTCOME_STYLE else 1000,
                **trial_hover([t.number for t in pts]),
                marker={"size": 8, "symbol": symbol, "opacity": opacity, "color": color},
            )
        )
    return traces


def _front_trace(data: DashboardData, x_key: str, visible: bool = True) -> Any:
    import plotly.graph_objects as go

    trials = data.by_number()
    numbers = data.fronts.get(x_key, [])
    pts = [trials[n] for n in numbers]
    return go.Scatter(
        x=[t.metric(x_key) for t in pts],
        y=[t.metric(data.metric) for t in pts],
        mode="lines+markers",
        line={"shape": "hv", "color": FRONT_COLOR, "width": 2},
        marker={"size": 11, "symbol": "circle-open", "color": FRONT_COLOR},
        name="Pareto front",
        visible=visible,
        legendrank=3000,
        **trial_hover(numbers),
    )


def fig_params(data: DashboardData) -> go.Figure:
    import plotly.graph_objects as go

    points = _trial_traces(data, "n_params", _trial_groups(data))
    fig = go.Figure(points + [_front_trace(data, "n_params")])
    return base_layout(fig, xaxis={"type": "log", "title": "parameters"}, yaxis=_y_axis(data))


def fig_cost(data: DashboardData) -> go.Figure:
    """One set of points; the menu swaps their x and shows the matching front."""
    import plotly.graph_objects as go

    if not data.cost_keys:
        return message("no trial recorded a cost")
    first = data.cost_keys[0]
    groups = _trial_groups(data)
    points = _trial_traces(data, first, groups)
    fronts = [_front_trace(data, key, visible=key == first) for key in data.cost_keys]
    fig = go.Figure(points + fronts)
    buttons = []
    for key in data.cost_keys:
        xs = [_xs(pts, key) for _, pts in groups] + [f.x for f in fronts]
        visible = [True] * len(points) + [k == key for k in data.cost_keys]
        layout = {"xaxis.title.text": metrics.label(key)}
        buttons.append(
            {
                "label": metrics.label(key),
                "method": "update",
                "args": [{"x": xs, "visible": visible}, layout],
            }
        )
    return base_layout(
        fig,
        xaxis={"type": "log", "title": metrics.label(first)},
        yaxis=_y_axis(data),
        updatemenus=[menu(buttons)],
    )


def _y_axis(data: DashboardData) -> dict[str, Any]:
    """Perplexity on a log axis: equal steps of loss look equal."""
    return {
        "title": metrics.label(data.metric),
        "type": "log" if data.metric == "val_perplexity" else "linear",
    }


def fig_history(data: DashboardData) -> go.Figure:
    import numpy as np
    from plotly.subplots import make_subplots

    h = data.history
    metric, direction = data.objectives[0]
    cost_key = data.cost_keys[0] if data.cost_keys else None
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04)
    scatter = scatter_type(len(h.numbers))
    point = {
        "mode": "markers",
        "marker": {"size": 7, "color": "#1f77b4", "opacity": 0.7},
        **trial_hover(h.numbers),
    }
    best = {"mode": "lines", "line": {"shape": "hv", "color": "#ff7f0e", "width": 2}}
    numbers = np.array(h.numbers)
    values, best_y = np.array(h.values, dtype=float), np.array(h.best, dtype=float)
    fig.add_trace(scatter(x=numbers, y=values, name="trial", **point), row=1, col=1)
    fig.add_trace(scatter(x=numbers, y=best_y, name="best so far", **best), row=1, col=1)
    if cost_key:
        xs = np.array(h.cumulative[cost_key], dtype=float)
        fig.add_trace(scatter(x=xs, y=values, showlegend=False, **point), row=1, col=2)
        fig.add_trace(scatter(x=xs, y=best_y, showlegend=False, **best), row=1, col=2)
        buttons = [
            {
                "label": f"cumulative {metrics.label(k)}",
                "method": "update",
                "args": [
                    {"x": [np.array(h.cumulative[k], dtype=float)] * 2},
                    {"xaxis2.title.text": f"cumulative {metrics.label(k)}"},
                    [2, 3],
                ],
            }
            for k in data.cost_keys
        ]
        fig.update_layout(updatemenus=[menu(buttons) | {"x": 1.0, "xanchor": "right"}])
    fig.update_xaxes(title_text="trial number", row=1, col=1)
    cost_label = metrics.label(cost_key) if cost_key else "cost"
    fig.update_xaxes(title_text=f"cumulative {cost_label}", row=1, col=2)
    fig.update_yaxes(title_text=f"{metric} ({direction})", row=1, col=1)
    return base_layout(fig)


def fig_curves(data: DashboardData) -> go.Figure:
    """Curves joined into one trace per colour (NaN between trials): fast at any count."""
    import plotly.graph_objects as go

    trials = data.by_number()
    chosen = [trials[n] for n in data.curves]
    fig = go.Figure()
    ranked_best = data.top[0] if data.top else None
    colours = dict(zip(_group_order(data), PALETTE * 4, strict=False))
    for key in [*_group_order(data), *OUTCOME_STYLE]:
        lines = [t for t in chosen if (t.group if t.state == "COMPLETE" else t.outcome) == key]
        if not lines:
            continue
        color, _, opacity = OUTCOME_STYLE.get(key, (colours.get(key), "", 0.55))
        xs, ys, text = _joined(lines)
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                name=key,
                text=text,
                hovertemplate="%{text}<extra></extra>",
                opacity=opacity,
                line={
                    "color": color,
                    "width": 1.2,
                    "dash": "dot" if key in OUTCOME_STYLE else "solid",
                },
            )
        )
    for key in ("pruned", "diverged", "failed"):
        ends = [t for t in chosen if t.outcome == key]
        if ends:
            color, symbol, _ = OUTCOME_STYLE[key]
            fig.add_trace(
                go.Scatter(
                    x=[t.curve[-1][0] for t in ends],
                    y=[t.curve[-1][1] for t in ends],
                    mode="markers",
                    name=f"{key} here",
                    **trial_hover([t.number for t in ends]),
                    marker={"symbol": symbol, "size": 10, "color": color, "line": {"width": 1}},
                )
            )
    if ranked_best is not None and trials[ranked_best].curve:
        best = trials[ranked_best]
        fig.add_trace(
            go.Scatter(
                x=[p[0] for p in best.curve],
                y=[p[1] for p in best.curve],
                mode="lines+markers",
                name=f"best (trial {best.number})",
                **trial_hover([best.number] * len(best.curve)),
                line={"color": FRONT_COLOR, "width": 3},
            )
        )
    shown = f"{len(chosen)} of {plural(sum(bool(t.curve) for t in data.trials), 'curve')}"
    return base_layout(
        fig,
        xaxis={"title": "tokens seen"},
        yaxis={"title": "validation loss (nats/token)"},
        title={"text": shown, "font": {"size": 12}, "x": 0.99, "xanchor": "right"},
    )


def _group_order(data: DashboardData) -> list[str]:
    sizes: dict[str, float] = {}
    for t in data.complete:
        sizes.setdefault(t.group, t.metric("n_params") or 0.0)
    return sorted(sizes, key=lambda g: sizes[g])


def _joined(lines: Sequence[TrialPoint]) -> tuple[Any, Any, list]:
    import numpy as np

    xs: list = []
    ys: list = []
    text: list = []
    for t in lines:
        label = f"trial {t.number} · {t.outcome} · {t.group}"
        for tokens, loss in t.curve:
            xs.append(tokens)
            ys.append(loss)
            text.append(f"{label}<br>{si(tokens)} tokens · val_loss {loss:.4g}")
        xs.append(math.nan)  # a gap between trials
        ys.append(math.nan)
        text.append("")
    return np.array(xs, dtype=float), np.array(ys, dtype=float), text
