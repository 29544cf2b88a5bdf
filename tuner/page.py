"""Dashboards, the page step: figures (tuner.figures) -> one self-contained HTML file.

The page embeds plotly.js, so it opens offline, holds each trial's hover text once, and is
attached to the study's parent MLflow run so the MLflow UI has it too. `publish` is the one
"redraw after a run" step every run path calls.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import TYPE_CHECKING

from tuner import htmlpage
from tuner.dashboards import DashboardData, NoCompleteTrials, gather
from tuner.figures import FIGURES, figures
from tuner.plotstyle import HOVER_META, hover_text
from tuner.records import scaling_plan

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from tuner.study import StudyHandle


def default_path(name: str) -> Path:
    return Path("dashboards") / f"{name}.html"


def write_dashboard(handle: StudyHandle, path: str | Path | None = None) -> Path:
    """Draw the study to one self-contained HTML file (default dashboards/NAME.html)."""
    page = render_html(gather(handle))
    return htmlpage.write(Path(path) if path else default_path(handle.name), page)


def log_dashboard(handle: StudyHandle, path: str | Path) -> None:
    """Attach the page to the study's parent MLflow run as dashboards/NAME.html."""
    htmlpage.attach(handle, path, f"{handle.name}.html")


def publish(handle: StudyHandle, path: str | Path | None = None) -> Path | None:
    """Redraw the page and attach it to MLflow; None (no error) while nothing is complete.
    An IsoFLOP study also gets its scaling page (tuner.scaling.page) redrawn."""
    try:
        path = write_dashboard(handle, path)
    except NoCompleteTrials:
        return None
    log_dashboard(handle, path)
    if scaling_plan(handle.study) is not None:
        from tuner.scaling.page import publish_scaling

        publish_scaling(handle)
    return path


def render_html(data: DashboardData, figs: dict[str, go.Figure] | None = None) -> str:
    """The whole page: plotly.js inline once, the hover table once, one section per figure
    drawn (in the order of FIGURES)."""
    figs = figs if figs is not None else figures(data)
    hover = {t.number: hover_text(t) for t in data.trials}
    sections = [  # only the sections that help this study
        htmlpage.section(key, title, caption, figs[key])
        for key, title, caption in FIGURES
        if key in figs
    ]
    scripts = (
        '<script type="application/json" id="trial-hover">'
        f"{htmlpage.script_json(json.dumps(hover))}</script>\n<script>{_DRAW_JS}</script>"
    )
    return htmlpage.document(f"tuner · {data.study}", _header(data), [*sections, scripts])


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
