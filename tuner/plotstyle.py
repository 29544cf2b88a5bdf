"""The look shared by every dashboard figure: layout, colours, hover text, WebGL switch."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tuner.dashboards import TrialPoint
from tuner.units import si

if TYPE_CHECKING:
    import plotly.graph_objects as go

WEBGL_ABOVE = 2000
"""Scatters with more points than this are drawn with WebGL (scattergl)."""

OUTCOME_STYLE = {  # colour, marker symbol, opacity
    "pruned": ("#8c8c8c", "x", 0.45),
    "diverged": ("#d62728", "x", 0.5),
    "failed": ("#444444", "x", 0.5),
}
FRONT_COLOR = "#111111"
HOVER_META = "trial-hover"
"""Marks traces whose `text` the page fills from the hover table, by `customdata`."""


def trial_hover(numbers: Sequence[int]) -> dict[str, Any]:
    """Trace arguments that show the full hover text of each point's trial."""
    import numpy as np

    return {
        "customdata": np.array(numbers, dtype=np.int32),
        "meta": HOVER_META,
        "hovertemplate": "%{text}<extra></extra>",
    }


HOVER_METRICS = (
    ("val_perplexity", "ppl"),
    ("val_bpb", "bpb"),
    ("val_loss", "loss"),
    ("val_accuracy", "acc"),
)


def hover_text(t: TrialPoint) -> str:
    """Trial number, state, params and metrics, for every point of that trial."""
    head = f"<b>trial {t.number}</b> · {t.outcome}"
    if t.outcome != "complete" and t.reason:
        head += f" ({short_reason(t.reason)})"
    params = [html.escape(f"{k}={fmt(v)}") for k, v in t.params.items()]
    lines = [head] + [", ".join(params[i : i + 3]) for i in range(0, len(params), 3)]
    shown = [(label, t.metric(key)) for key, label in HOVER_METRICS]
    lines.append(" · ".join(f"{label} {v:.4g}" for label, v in shown if v is not None))
    cost = [
        (t.metric("n_params"), "{} params", si),
        (t.metric("train_flops"), "{} FLOPs", si),
        (t.metric("wall_seconds"), "{} s", fmt),
        (t.metric("price_usd"), "${}", fmt),
    ]
    lines.append(" · ".join(form.format(fn(v)) for v, form, fn in cost if v is not None))
    return "<br>".join(line for line in lines if line)


def base_layout(fig: go.Figure, **layout: Any) -> go.Figure:
    defaults = {
        "template": "plotly_white",
        "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
        "legend": {"orientation": "h", "y": -0.2},
        "hoverlabel": {"align": "left"},
        "height": 460,
    }
    fig.update_layout(**(defaults | layout))
    return fig


def scatter_type(n_points: int) -> type:
    import plotly.graph_objects as go

    return go.Scattergl if n_points > WEBGL_ABOVE else go.Scatter


PALETTE = ["#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#e377c2", "#bcbd22", "#8c564b"]


def message(text: str) -> go.Figure:
    """A figure that says why there is no plot (still an svg, so the page stays whole)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_annotation(
        text=html.escape(text),
        showarrow=False,
        x=0.5,
        y=0.5,
        xref="paper",
        yref="paper",
        font={"size": 15, "color": "#555"},
    )
    return base_layout(fig, height=260, xaxis={"visible": False}, yaxis={"visible": False})


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def short_reason(reason: str) -> str:
    return html.escape(reason if len(reason) <= 80 else reason[:77] + "...")


def menu(buttons: list[dict]) -> dict:
    """A drop-down menu at the top left of a figure."""
    return {
        "buttons": buttons,
        "direction": "down",
        "x": 0.0,
        "xanchor": "left",
        "y": 1.14,
        "yanchor": "top",
        "showactive": True,
    }
