"""Dashboards, the draw half: gathered data (tuner.dashboards) -> plotly figures -> HTML page.

Nothing here reads the study: every number comes from `DashboardData`, so a wrong number is a
gather bug. Points carry their trial number; the page holds each trial's hover text once.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tuner.dashboards import COST_AXES, DashboardData, TrialPoint, _finite

if TYPE_CHECKING:
    import plotly.graph_objects as go

METRIC_LABELS = {
    "val_perplexity": "validation perplexity",
    "val_bpb": "validation bits per byte",
    "val_loss": "validation loss (nats/token)",
    "val_accuracy": "validation accuracy",
    "train_loss": "training loss",
    "n_params": "parameters",
    **COST_AXES,
}
WEBGL_ABOVE = 2000
"""Scatters with more points than this are drawn with WebGL (scattergl)."""

OUTCOME_STYLE = {  # colour, marker symbol, opacity
    "pruned": ("#8c8c8c", "x", 0.45),
    "diverged": ("#d62728", "x", 0.5),
    "failed": ("#444444", "x", 0.5),
}
FRONT_COLOR = "#111111"
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
    ("top", "Top trials", "Best complete trials on the first objective, with their MLflow runs."),
)


def figures(data: DashboardData) -> dict[str, go.Figure]:
    """One figure per section of the page, keyed by the ids in FIGURES.

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
        "top": fig_top,
    }
    return {key: draw[key](data) for key, _, _ in FIGURES}


HOVER_META = "trial-hover"
"""Marks traces whose `text` the page fills from the hover table, by `customdata`."""


def _trial_hover(numbers: Sequence[int]) -> dict[str, Any]:
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
        head += f" ({_short(t.reason)})"
    params = [html.escape(f"{k}={_fmt(v)}") for k, v in t.params.items()]
    lines = [head] + [", ".join(params[i : i + 3]) for i in range(0, len(params), 3)]
    shown = [(label, t.metric(key)) for key, label in HOVER_METRICS]
    lines.append(" · ".join(f"{label} {v:.4g}" for label, v in shown if v is not None))
    cost = [
        (t.metric("n_params"), "{} params", _si),
        (t.metric("train_flops"), "{} FLOPs", _si),
        (t.metric("wall_seconds"), "{} s", _fmt),
        (t.metric("price_usd"), "${}", _fmt),
    ]
    lines.append(" · ".join(form.format(fn(v)) for v, form, fn in cost if v is not None))
    return "<br>".join(line for line in lines if line)


def _base_layout(fig: go.Figure, **layout: Any) -> go.Figure:
    defaults = {
        "template": "plotly_white",
        "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
        "legend": {"orientation": "h", "y": -0.2},
        "hoverlabel": {"align": "left"},
        "height": 460,
    }
    fig.update_layout(**(defaults | layout))
    return fig


def _scatter(n_points: int) -> type:
    import plotly.graph_objects as go

    return go.Scattergl if n_points > WEBGL_ABOVE else go.Scatter


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

    trace = _scatter(len(data.trials))
    colours = dict(zip(_group_order(data), _PALETTE * 4, strict=False))
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
                **_trial_hover([t.number for t in pts]),
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
        **_trial_hover(numbers),
    )


def fig_params(data: DashboardData) -> go.Figure:
    import plotly.graph_objects as go

    points = _trial_traces(data, "n_params", _trial_groups(data))
    fig = go.Figure(points + [_front_trace(data, "n_params")])
    return _base_layout(fig, xaxis={"type": "log", "title": "parameters"}, yaxis=_y_axis(data))


def fig_cost(data: DashboardData) -> go.Figure:
    """One set of points; the menu swaps their x and shows the matching front."""
    import plotly.graph_objects as go

    if not data.cost_keys:
        return _message("no trial recorded a cost")
    first = data.cost_keys[0]
    groups = _trial_groups(data)
    points = _trial_traces(data, first, groups)
    fronts = [_front_trace(data, key, visible=key == first) for key in data.cost_keys]
    fig = go.Figure(points + fronts)
    buttons = []
    for key in data.cost_keys:
        xs = [_xs(pts, key) for _, pts in groups] + [f.x for f in fronts]
        visible = [True] * len(points) + [k == key for k in data.cost_keys]
        layout = {"xaxis.title.text": COST_AXES[key]}
        buttons.append(
            {
                "label": COST_AXES[key],
                "method": "update",
                "args": [{"x": xs, "visible": visible}, layout],
            }
        )
    return _base_layout(
        fig,
        xaxis={"type": "log", "title": COST_AXES[first]},
        yaxis=_y_axis(data),
        updatemenus=[_menu(buttons)],
    )


def _y_axis(data: DashboardData) -> dict[str, Any]:
    """Perplexity on a log axis: equal steps of loss look equal."""
    return {
        "title": METRIC_LABELS[data.metric],
        "type": "log" if data.metric == "val_perplexity" else "linear",
    }


def _menu(buttons: list[dict]) -> dict:
    return {
        "buttons": buttons,
        "direction": "down",
        "x": 0.0,
        "xanchor": "left",
        "y": 1.14,
        "yanchor": "top",
        "showactive": True,
    }


def fig_history(data: DashboardData) -> go.Figure:
    import numpy as np
    from plotly.subplots import make_subplots

    h = data.history
    metric, direction = data.objectives[0]
    cost_key = data.cost_keys[0] if data.cost_keys else None
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04)
    scatter = _scatter(len(h.numbers))
    point = {
        "mode": "markers",
        "marker": {"size": 7, "color": "#1f77b4", "opacity": 0.7},
        **_trial_hover(h.numbers),
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
                "label": f"cumulative {COST_AXES[k]}",
                "method": "update",
                "args": [
                    {"x": [np.array(h.cumulative[k], dtype=float)] * 2},
                    {"xaxis2.title.text": f"cumulative {COST_AXES[k]}"},
                    [2, 3],
                ],
            }
            for k in data.cost_keys
        ]
        fig.update_layout(updatemenus=[_menu(buttons) | {"x": 1.0, "xanchor": "right"}])
    fig.update_xaxes(title_text="trial number", row=1, col=1)
    fig.update_xaxes(title_text=f"cumulative {COST_AXES.get(cost_key, 'cost')}", row=1, col=2)
    fig.update_yaxes(title_text=f"{metric} ({direction})", row=1, col=1)
    return _base_layout(fig)


def fig_curves(data: DashboardData) -> go.Figure:
    """Curves joined into one trace per colour (NaN between trials): fast at any count."""
    import plotly.graph_objects as go

    trials = data.by_number()
    chosen = [trials[n] for n in data.curves]
    fig = go.Figure()
    ranked_best = data.top[0] if data.top else None
    colours = dict(zip(_group_order(data), _PALETTE * 4, strict=False))
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
                    **_trial_hover([t.number for t in ends]),
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
                **_trial_hover([best.number] * len(best.curve)),
                line={"color": FRONT_COLOR, "width": 3},
            )
        )
    shown = f"{len(chosen)} of {sum(bool(t.curve) for t in data.trials)} curves"
    return _base_layout(
        fig,
        xaxis={"title": "tokens seen"},
        yaxis={"title": "validation loss (nats/token)"},
        title={"text": shown, "font": {"size": 12}, "x": 0.99, "xanchor": "right"},
    )


_PALETTE = ["#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#e377c2", "#bcbd22", "#8c564b"]


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
            text.append(f"{label}<br>{_si(tokens)} tokens · val_loss {loss:.4g}")
        xs.append(math.nan)  # a gap between trials
        ys.append(math.nan)
        text.append("")
    return np.array(xs, dtype=float), np.array(ys, dtype=float), text


def fig_importance(data: DashboardData) -> go.Figure:
    import plotly.graph_objects as go

    if not data.importance:
        return _message(data.importance_note)
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
    return _base_layout(
        fig,
        xaxis={"title": f"importance for {data.objectives[0][0]}", "range": [0, 1]},
        height=max(260, 60 + 40 * len(items)),
    )


def fig_parallel(data: DashboardData) -> go.Figure:
    import numpy as np
    import plotly.graph_objects as go

    pts = [t for t in data.complete if t.values and _finite(t.values[0])]
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
    return _base_layout(
        go.Figure(go.Parcoords(line=line, dimensions=dims)),
        margin={"l": 70, "r": 40, "t": 70, "b": 30},
    )


def _dimension(name: str, values: list[Any], scale: str) -> dict[str, Any]:
    """One axis: numbers on a linear or log scale, anything else as ordered categories."""
    import numpy as np

    present = [v for v in values if v is not None]
    numeric = bool(present) and all(_finite(v) for v in present)
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
    choices = sorted(set(map(_fmt, present)), key=_natural)
    index = {c: i for i, c in enumerate(choices)}
    codes = np.array([index.get(_fmt(v), np.nan) for v in values], dtype=float)
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
    done = [t for t in pts if t.values and _finite(t.values[0])]
    stopped = [t for t in pts if t.state != "COMPLETE"]
    scatter = _scatter(len(pts))

    def jitter(ts: list[TrialPoint]) -> Any:  # deterministic spread of +-7% around the batch size
        return np.array([t.batch_size * 2 ** (0.1 * math.sin(t.number * 12.9898)) for t in ts])

    traces = [
        scatter(
            x=jitter(done),
            y=np.array([t.learning_rate for t in done]),
            mode="markers",
            name="complete",
            **_trial_hover([t.number for t in done]),
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
                **_trial_hover([t.number for t in stopped]),
                marker={"size": 7, "symbol": "x", "color": "#8c8c8c", "opacity": 0.6},
            )
        )
    sizes = sorted({t.batch_size for t in pts})
    return _base_layout(
        go.Figure(traces),
        xaxis={"type": "log", "title": "batch size", "tickvals": sizes[:30]},
        yaxis={"type": "log", "title": "learning rate"},
    )


def fig_top(data: DashboardData) -> go.Figure:
    import plotly.graph_objects as go

    trials = data.by_number()
    rows = [trials[n] for n in data.top]
    metrics = [m for m, _ in data.objectives] + [
        m for m in ("val_perplexity", "val_bpb", "val_accuracy") if m not in dict(data.objectives)
    ]
    head = [
        "rank",
        "trial",
        *data.param_names,
        *(TABLE_LABELS.get(m, m) for m in metrics),
        "params",
        "FLOPs",
        "wall s",
        "MLflow run",
    ]
    cols = [list(range(1, len(rows) + 1)), [t.number for t in rows]]
    cols += [[html.escape(_fmt(t.params.get(n))) for t in rows] for n in data.param_names]
    cols += [[_fmt(t.metric(m)) for t in rows] for m in metrics]
    cols += [
        [_si(t.metric("n_params")) for t in rows],
        [_si(t.metric("train_flops")) for t in rows],
        [_fmt(t.metric("wall_seconds")) for t in rows],
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
    return _base_layout(
        go.Figure(table), height=120 + 26 * len(rows), margin={"l": 10, "r": 10, "t": 10, "b": 10}
    )


TABLE_LABELS = {
    "val_perplexity": "ppl",
    "val_bpb": "bpb",
    "val_accuracy": "acc",
    "val_loss": "val loss",
    "train_loss": "train loss",
}


def _message(text: str) -> go.Figure:
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
    return _base_layout(fig, height=260, xaxis={"visible": False}, yaxis={"visible": False})


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _si(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.3g}"


def _short(reason: str) -> str:
    return html.escape(reason if len(reason) <= 80 else reason[:77] + "...")


# ================================================================ the page


def render_html(data: DashboardData, figs: dict[str, go.Figure] | None = None) -> str:
    """The whole page: plotly.js inline once, the hover table once, one section per figure."""
    from plotly.offline import get_plotlyjs

    figs = figs if figs is not None else figures(data)
    hover = {t.number: hover_text(t) for t in data.trials}
    sections = []
    for key, title, caption in FIGURES:
        height = figs[key].layout.height or 460
        sections.append(
            f'<section id="{key}"><h2>{html.escape(title)}</h2><p>{html.escape(caption)}</p>'
            f'<div id="fig-{key}" class="plotly-graph-div" style="height:{height}px;width:100%">'
            f'</div><script type="application/json" class="figure" data-div="fig-{key}">'
            f"{_script_json(figs[key].to_json(validate=False))}</script></section>"
        )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>tuner · {html.escape(data.study)}</title><style>{_CSS}</style>"
        f"<script>{get_plotlyjs()}</script></head><body>{_header(data)}\n"
        + "\n".join(sections)
        + '\n<script type="application/json" id="trial-hover">'
        f"{_script_json(json.dumps(hover))}</script>\n<script>{_DRAW_JS}</script>"
        "</body></html>\n"
    )


def _script_json(text: str) -> str:
    """JSON safe inside a <script> element: a trial's reason could contain '</script>'."""
    return text.replace("</", "<\\/")


_DRAW_JS = """
const HOVER = JSON.parse(document.getElementById("trial-hover").textContent);
const TYPED = {i1: Int8Array, u1: Uint8Array, i2: Int16Array, u2: Uint16Array, i4: Int32Array,
               u4: Uint32Array, f4: Float32Array, f8: Float64Array};
function plain(v) {  // plotly.py sends numpy arrays as base64 typed arrays
  if (!v || !v.bdata) return v;
  const raw = atob(v.bdata), bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return Array.from(new TYPED[v.dtype](bytes.buffer));
}
for (const node of document.querySelectorAll("script.figure")) {
  const fig = JSON.parse(node.textContent);
  for (const trace of fig.data) {
    if (trace.meta === "HOVER_META") trace.text = plain(trace.customdata).map(n => HOVER[n]);
  }
  Plotly.newPlot(node.dataset.div, fig.data, fig.layout, {displaylogo: false, responsive: true});
}
""".replace("HOVER_META", HOVER_META)


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:16px;"
    "color:#222}h1{margin:0 0 4px}h2{margin:28px 0 2px;font-size:1.15em}"
    "section p{margin:0 0 6px;color:#555;font-size:.9em}.meta{color:#555;font-size:.9em}"
    "code{background:#f3f3f3;padding:1px 4px;border-radius:3px}"
)


def _header(data: DashboardData) -> str:
    counts = ", ".join(f"{n} {k}" for k, n in data.counts().items() if n)
    objective = ", ".join(f"{d} {m}" for m, d in data.objectives)
    best = ""
    if data.top:
        t = data.by_number()[data.top[0]]
        best = (
            f"<br>best: trial {t.number}, {data.objectives[0][0]} {t.values[0]:.4g}"
            f" (MLflow run <code>{html.escape(t.run_id or '-')}</code>)"
        )
    return (
        f'<h1>study {html.escape(data.study)}</h1><div class="meta">space '
        f"<code>{html.escape(data.space)}</code> · {html.escape(data.sampler)} sampler · "
        f"{html.escape(data.pruner)} pruner · objective {html.escape(objective)}<br>"
        f"trials: {html.escape(counts)}{best}<br>MLflow: experiment "
        f"<code>{html.escape(data.experiment_id)}</code>, study run "
        f"<code>{html.escape(data.parent_run_id)}</code> (browse with <code>tuner ui</code>)"
        f" · drawn {data.generated}</div>"
    )


# ================================================================ public API
