"""The scaling dashboard, draw step: gathered arrays (tuner.scaling.gather) -> plotly figures.

Nothing here computes a number; a wrong value is a gather bug. Colours follow the budgets
(one per IsoFLOP curve, smallest first) in every figure; the law's extrapolation past the
largest budget is dashed and its bootstrap band shaded.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import numpy as np

from tuner.plotstyle import FRONT_COLOR, PALETTE, base_layout, message
from tuner.scaling.gather import Curve, Optimum, ScalingPage
from tuner.units import si

if TYPE_CHECKING:
    import plotly.graph_objects as go

FIGURES = (  # id, title, caption
    (
        "isoflop",
        "IsoFLOP curves",
        "Final validation loss against non-embedding parameters, one colour per compute budget; "
        "solid: the parabola in log N fitted to each budget (approach 2), star: its minimum; "
        "dotted: the parametric law L(N, D) along the same budget (approach 3).",
    ),
    (
        "optimal",
        "Compute-optimal parameters and tokens",
        "N_opt(C) and D_opt(C): stars are the parabolas' minima, the dashed coloured line the "
        "power law through them (approach 2); black: the law's optimum with its 90 % bootstrap "
        "band, dashed past the largest budget (the extrapolation).",
    ),
    (
        "frontier",
        "Loss against compute",
        "Every run at its budget; black: the loss the law predicts at the compute-optimal N and "
        "D, with its 90 % bootstrap band, dashed past the data.",
    ),
    (
        "residuals",
        "Residuals",
        "Predicted minus observed loss of every run, in % (log residual x 100); dotted: +/- the "
        "root-mean-square.",
    ),
)


def scaling_figures(page: ScalingPage) -> dict[str, go.Figure]:
    """One figure per section, keyed by the ids in FIGURES."""
    if page.fit is None or page.optimum is None:
        why = f"no fit yet: {page.note}"
        return {
            "isoflop": fig_isoflop(page),
            "optimal": message(why),
            "frontier": message(why),
            "residuals": message(why),
        }
    return {
        "isoflop": fig_isoflop(page),
        "optimal": fig_optimal(page.optimum, page.curves),
        "frontier": fig_frontier(page, page.optimum),
        "residuals": fig_residuals(page),
    }


def _colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _hover(curve: Curve) -> list[str]:
    return [
        f"<b>trial {t}</b> · budget {curve.budget:.3g} FLOPs<br>N {si(n)} · D {si(d)} · "
        f"loss {loss:.4f} · lr {lr:.3g}"
        for t, n, d, loss, lr in zip(
            curve.trials, curve.params, curve.tokens, curve.loss, curve.lrs, strict=True
        )
    ]


def fig_isoflop(page: ScalingPage) -> go.Figure:
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, c in enumerate(page.curves):
        name, colour = f"C = {c.budget:.3g}", _colour(i)
        fig.add_trace(
            go.Scatter(
                x=c.params,
                y=c.loss,
                mode="markers",
                name=name,
                legendgroup=name,
                text=_hover(c),
                hovertemplate="%{text}<extra></extra>",
                marker={"size": 9, "color": colour},
            )
        )
        if len(c.parabola_params):
            line = {"color": colour, "width": 2}
            fig.add_trace(_line(c.parabola_params, c.parabola_loss, name, line, "parabola"))
            dotted = {"color": colour, "width": 1.5, "dash": "dot"}
            fig.add_trace(_line(c.parabola_params, c.law_loss, name, dotted, "law"))
        if c.vertex is not None:
            fig.add_trace(
                go.Scatter(
                    x=[c.vertex[0]],
                    y=[c.vertex[1]],
                    mode="markers",
                    legendgroup=name,
                    showlegend=False,
                    hovertemplate=f"{name}: minimum at N %{{x:.3s}}, loss %{{y:.4f}}"
                    "<extra></extra>",
                    marker={"size": 16, "symbol": "star", "color": colour, "line": {"width": 1}},
                )
            )
    return base_layout(
        fig,
        xaxis={"type": "log", "title": "non-embedding parameters N"},
        yaxis={"title": "final validation loss (nats/token)"},
    )


def _line(x: Any, y: Any, group: str, line: dict[str, Any], what: str) -> go.Scatter:
    import plotly.graph_objects as go

    return go.Scatter(
        x=x,
        y=y,
        mode="lines",
        legendgroup=group,
        showlegend=False,
        line=line,
        hovertemplate=f"{group} {what}: N %{{x:.3s}}, loss %{{y:.4f}}<extra></extra>",
    )


def _law_traces(
    x: np.ndarray,
    y: np.ndarray,
    band: tuple[np.ndarray, np.ndarray] | None,
    data_max: float,
    label: str,
    axis: dict[str, str],
    legend: bool,
) -> list[go.Scatter]:
    """The law's line (solid over the data, dashed beyond) over its shaded band."""
    import plotly.graph_objects as go

    traces = []
    if band is not None:
        low, high = band
        traces.append(
            go.Scatter(
                x=np.concatenate([x, x[::-1]]),
                y=np.concatenate([high, low[::-1]]),
                fill="toself",
                fillcolor="rgba(17,17,17,0.12)",
                line={"width": 0},
                hoverinfo="skip",
                name="90 % band",
                showlegend=legend,
                **axis,
            )
        )
    inside = x <= data_max * 1.0001
    edge = int(np.argmax(~inside)) if (~inside).any() else len(x)
    for part, dash, name in (
        (slice(0, edge), "solid", f"law {label}"),
        (slice(max(edge - 1, 0), len(x)), "dash", "extrapolation"),
    ):
        traces.append(
            go.Scatter(
                x=x[part],
                y=y[part],
                mode="lines",
                name=name,
                showlegend=legend,
                line={"color": FRONT_COLOR, "width": 2, "dash": dash},
                hovertemplate=f"C %{{x:.3g}}: {label} %{{y:.4g}}<extra></extra>",
                **axis,
            )
        )
    return traces


def fig_optimal(opt: Optimum, curves: list[Curve]) -> go.Figure:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("N_opt(C)", "D_opt(C)"))
    panels = (
        (opt.params, opt.params_band, opt.vertex_params, opt.approach2_params, "N_opt"),
        (opt.tokens, opt.tokens_band, opt.vertex_tokens, opt.approach2_tokens, "D_opt"),
    )
    colours = {c.budget: _colour(i) for i, c in enumerate(curves)}
    for col, (law, band, vertex, approach2, label) in enumerate(panels, start=1):
        axis = {"xaxis": f"x{col if col > 1 else ''}", "yaxis": f"y{col if col > 1 else ''}"}
        first = col == 1
        for trace in _law_traces(opt.flops, law, band, opt.data_max, label, axis, first):
            fig.add_trace(trace)
        if approach2 is not None:
            fig.add_trace(
                go.Scatter(
                    x=opt.flops,
                    y=approach2,
                    mode="lines",
                    name="approach 2 power law",
                    showlegend=first,
                    line={"color": "#d62728", "width": 1.5, "dash": "dash"},
                    hovertemplate=f"C %{{x:.3g}}: approach 2 {label} %{{y:.4g}}<extra></extra>",
                    **axis,
                )
            )
        fig.add_trace(
            go.Scatter(
                x=opt.vertex_flops,
                y=vertex,
                mode="markers",
                name="IsoFLOP minima",
                showlegend=first,
                marker={
                    "size": 14,
                    "symbol": "star",
                    "color": [colours.get(c, FRONT_COLOR) for c in opt.vertex_flops],
                    "line": {"width": 1},
                },
                hovertemplate=f"C %{{x:.3g}}: parabola minimum {label} %{{y:.4g}}<extra></extra>",
                **axis,
            )
        )
        shown = np.concatenate([law, vertex, approach2 if approach2 is not None else law])
        span = [np.log10(shown.min()) - 0.5, np.log10(shown.max()) + 0.5]  # not the band's
        fig.update_yaxes(range=span, row=1, col=col)
    fig.update_xaxes(type="log", title="compute C (FLOPs)")
    fig.update_yaxes(type="log")
    fig.update_yaxes(title="parameters N", row=1, col=1)
    fig.update_yaxes(title="tokens D", row=1, col=2)
    return base_layout(fig, height=480)


def fig_frontier(page: ScalingPage, opt: Optimum) -> go.Figure:
    import plotly.graph_objects as go

    fig = go.Figure()
    for trace in _law_traces(opt.flops, opt.loss, opt.loss_band, opt.data_max, "loss", {}, True):
        fig.add_trace(trace)
    for i, c in enumerate(page.curves):
        fig.add_trace(
            go.Scatter(
                x=np.full(len(c.loss), c.budget),
                y=c.loss,
                mode="markers",
                name=f"C = {c.budget:.3g}",
                text=_hover(c),
                hovertemplate="%{text}<extra></extra>",
                marker={"size": 8, "color": _colour(i), "opacity": 0.8},
            )
        )
    # a loose fit's band can span decades: keep the axis on the runs and the law's line
    shown = np.concatenate([opt.loss, *(c.loss for c in page.curves)])
    low, high = float(shown.min()), float(shown.max())
    pad = 0.1 * (high - low) or 0.05 * high
    return base_layout(
        fig,
        xaxis={"type": "log", "title": "compute C (FLOPs)"},
        yaxis={"title": "final validation loss (nats/token)", "range": [low - pad, high + pad]},
    )


def fig_residuals(page: ScalingPage) -> go.Figure:
    import plotly.graph_objects as go

    fig = go.Figure()
    by_run = {(r.budget, r.params): i for i, r in enumerate(page.runs)}
    for i, c in enumerate(page.curves):
        idx = [by_run[(c.budget, int(n))] for n in c.params]
        fig.add_trace(
            go.Scatter(
                x=c.params,
                y=100 * page.residuals[idx],
                mode="markers",
                name=f"C = {c.budget:.3g}",
                text=_hover(c),
                hovertemplate="%{text}<br>residual %{y:+.2f} %<extra></extra>",
                marker={"size": 9, "color": _colour(i)},
            )
        )
    rmse = 100 * float(np.sqrt(np.mean(page.residuals**2))) if len(page.residuals) else 0.0
    fig.add_hline(y=0, line={"color": FRONT_COLOR, "width": 1})
    for level in (rmse, -rmse):
        fig.add_hline(y=level, line={"color": "#888", "width": 1, "dash": "dot"})
    return base_layout(
        fig,
        xaxis={"type": "log", "title": "non-embedding parameters N"},
        yaxis={"title": "predicted - observed (%)"},
    )


def fit_lines(page: ScalingPage) -> list[str]:
    """The header's summary of the fit, as escaped HTML lines."""
    if page.fit is None:
        return [html.escape(f"no fit yet: {page.note}")]
    law = page.fit.law
    intervals = law.intervals()

    def show(name: str) -> str:
        value = getattr(law, name)
        low_high = intervals.get(name)
        return f"{name} {value:.4g}" + (
            f" [{low_high[0]:.4g}, {low_high[1]:.4g}]" if low_high else ""
        )

    lines = [
        "L = E + A/N^alpha + B/D^beta: "
        + ", ".join(show(n) for n in ("E", "A", "B", "alpha", "beta"))
        + f" ({law.level:.0%} intervals, {len(law.samples)} resamples; residual rmse "
        f"{100 * law.residuals['log_rmse']:.2f} %)"
    ]
    iso = page.fit.approach2
    if iso is not None and iso.params_opt is not None and iso.tokens_opt is not None:
        lines.append(
            f"approach 2: N_opt ∝ C^{iso.params_opt.exponent:.3f}, "
            f"D_opt ∝ C^{iso.tokens_opt.exponent:.3f}; approach 3: a = {law.a:.3f}, "
            f"b = {law.b:.3f}"
        )
    lines.append(f"compute: {page.fit.compute.describe()}")
    lines += [f"warning: {w}" for w in page.fit.warnings]
    return [html.escape(line) for line in lines]
