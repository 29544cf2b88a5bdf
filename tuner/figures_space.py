"""Dashboard figures of the search space: importance, parallel coordinates, learning rate
against batch size, downstream tasks against perplexity, and the table of top trials."""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Any

from tuner import metrics
from tuner.dashboards import DashboardData, TrialPoint
from tuner.plotstyle import base_layout, fmt, menu, message, scatter_type, trial_hover
from tuner.units import finite, si

if TYPE_CHECKING:
    import plotly.graph_objects as go


def fig_importance(data: DashboardData) -> go.Figure:
    import plotly.graph_objects as go

    if not data.importance:
        return message(data.importance_note)
    items = sorted(data.importance.items(), key=lambda kv: kv[1])
    fig = go.Figure(
        go.Bar(
            x=[v for _, v in items],
            y=[k for k, _ in items],
            orientation="h",
            text=[f"{v:.2f}" for _, v in items],
            textposition="auto",
            hovertemplate="%{y}: %{x:.3f}<extra></extra>",
            marker_color="#1f77b4",
        )
    )
    return base_layout(
        fig,
        xaxis={"title": f"importance for {data.objectives[0][0]}", "range": [0, 1]},
        height=max(260, 60 + 40 * len(items)),
    )


def fig_tasks(data: DashboardData) -> go.Figure:
    """Each downstream task score against perplexity: do the two agree? The menu picks it."""
    import plotly.graph_objects as go

    if not data.task_metrics:
        return message("no downstream tasks in this study (add them under eval.tasks)")
    traces, buttons = [], []
    for i, name in enumerate(data.task_metrics):
        pts = [t for t in data.complete if t.metric(name) is not None and t.metric(data.metric)]
        traces.append(
            scatter_type(len(pts))(
                x=[t.metric(data.metric) for t in pts],
                y=[t.metric(name) for t in pts],
                mode="markers",
                name=metrics.label(name),
                visible=i == 0,
                marker={"size": 8, "color": "#1f77b4", "opacity": 0.75},
                **trial_hover([t.number for t in pts]),
            )
        )
    for i, name in enumerate(data.task_metrics):
        visible = [j == i for j in range(len(traces))]
        title = {"yaxis.title.text": metrics.label(name)}
        buttons.append({"label": name, "method": "update", "args": [{"visible": visible}, title]})
    return base_layout(
        go.Figure(traces),
        xaxis={"type": "log", "title": metrics.label(data.metric)},
        yaxis={"title": metrics.label(data.task_metrics[0])},
        updatemenus=[menu(buttons)] if len(buttons) > 1 else [],
        showlegend=False,
    )


def fig_parallel(data: DashboardData) -> go.Figure:
    import numpy as np
    import plotly.graph_objects as go

    pts = [t for t in data.complete if t.values and finite(t.values[0])]
    names = [n for n in data.param_names if any(n in t.params for t in pts)]
    dims = [
        _dimension(n, [t.params.get(n) for t in pts], data.param_scales.get(n, "linear"))
        for n in names
    ]
    metric, direction = data.objectives[0]
    values = np.array([t.values[0] for t in pts], dtype=float)
    dims.append({"label": metric, "values": values, "tickformat": ".4~g"})
    line = {
        "color": values,
        "colorscale": "Viridis",
        "reversescale": direction == "minimize",
        "showscale": True,
        "colorbar": {"title": {"text": metric}},
    }
    return base_layout(
        go.Figure(go.Parcoords(line=line, dimensions=dims)),
        margin={"l": 70, "r": 40, "t": 70, "b": 30},
    )


def _dimension(name: str, values: list[Any], scale: str) -> dict[str, Any]:
    """One axis: numbers on a linear or log scale, anything else as ordered categories."""
    import numpy as np

    present = [v for v in values if v is not None]
    numeric = bool(present) and all(finite(v) for v in present)
    if numeric and scale == "log" and min(present) > 0:
        low, high = math.log10(min(present)), math.log10(max(present))
        ticks = list(np.linspace(low, high, 5)) if high > low else [low]
        return {
            "label": f"{name} (log)",
            "values": np.log10(np.array(values, dtype=float)),
            "tickvals": ticks,
            "ticktext": [f"{10**k:.2g}" for k in ticks],
        }
    if numeric and scale != "categorical":
        return {"label": name, "values": np.array(values, dtype=float), "tickformat": ".3~g"}
    choices = sorted(set(map(fmt, present)), key=_natural)
    index = {c: i for i, c in enumerate(choices)}
    codes = np.array([index.get(fmt(v), np.nan) for v in values], dtype=float)
    return {
        "label": name,
        "values": codes,
        "tickvals": list(range(len(choices))),
        "ticktext": choices,
        "range": [-0.2, max(len(choices) - 0.8, 0.2)],
    }


def _natural(text: str) -> tuple:
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def fig_lr_batch(data: DashboardData) -> go.Figure:
    import numpy as np
    import plotly.graph_objects as go

    pts = [t for t in data.trials if t.learning_rate and t.batch_size]
    metric, direction = data.objectives[0]
    done = [t for t in pts if t.values and finite(t.values[0])]
    stopped = [t for t in pts if t.state != "COMPLETE"]
    scatter = scatter_type(len(pts))

    def jitter(ts: list[TrialPoint]) -> Any:  # deterministic spread of +-7% around the batch size
        return np.array([t.batch_size * 2 ** (0.1 * math.sin(t.number * 12.9898)) for t in ts])

    traces = [
        scatter(
            x=jitter(done),
            y=np.array([t.learning_rate for t in done]),
            mode="markers",
            name="complete",
            **trial_hover([t.number for t in done]),
            marker={
                "size": 9,
                "color": np.array([t.values[0] for t in done]),
                "colorscale": "Viridis",
                "reversescale": direction == "minimize",
                "showscale": True,
                "colorbar": {"title": {"text": metric}},
            },
        )
    ]
    if stopped:
        traces.append(
            scatter(
                x=jitter(stopped),
                y=np.array([t.learning_rate for t in stopped]),
                mode="markers",
                name="pruned / diverged / failed",
                **trial_hover([t.number for t in stopped]),
                marker={"size": 7, "symbol": "x", "color": "#8c8c8c", "opacity": 0.6},
            )
        )
    sizes = sorted({t.batch_size for t in pts})
    return base_layout(
        go.Figure(traces),
        xaxis={"type": "log", "title": "batch size", "tickvals": sizes[:30]},
        yaxis={"type": "log", "title": "learning rate"},
    )


def fig_top(data: DashboardData) -> go.Figure:
    import plotly.graph_objects as go

    trials = data.by_number()
    rows = [trials[n] for n in data.top]
    shown = [m for m, _ in data.objectives] + [
        m for m in ("val_perplexity", "val_bpb", "val_accuracy") if m not in dict(data.objectives)
    ]
    head = [
        "rank",
        "trial",
        *data.param_names,
        *(metrics.get(m).short for m in shown),
        "params",
        "FLOPs",
        "wall s",
        "MLflow run",
    ]
    cols = [list(range(1, len(rows) + 1)), [t.number for t in rows]]
    cols += [[html.escape(fmt(t.params.get(n))) for t in rows] for n in data.param_names]
    cols += [[fmt(t.metric(m)) for t in rows] for m in shown]
    cols += [
        [si(t.metric("n_params")) for t in rows],
        [si(t.metric("train_flops")) for t in rows],
        [fmt(t.metric("wall_seconds")) for t in rows],
        [t.run_id or "-" for t in rows],
    ]
    table = go.Table(
        header={
            "values": [f"<b>{h.replace('_', '<br>')}</b>" for h in head],
            "fill_color": "#eef1f5",
            "align": "left",
            "height": 40,
        },
        cells={"values": cols, "align": "left", "height": 24},
        columnwidth=[0.5, 0.5] + [1] * (len(head) - 3) + [3.6],
    )
    return base_layout(
        go.Figure(table), height=120 + 26 * len(rows), margin={"l": 10, "r": 10, "t": 10, "b": 10}
    )
