"""The scaling dashboard, page step: figures (tuner.scaling.figures) -> one self-contained
HTML file (plotly.js inlined, opens offline), `dashboards/NAME-scaling.html`, attached to the
study's MLflow parent run beside the study's own dashboard. `publish_scaling` is the redraw
that `tuner.page.publish` calls for a scaling study, so every run path keeps it current.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING

from tuner import htmlpage
from tuner.scaling.figures import FIGURES, fit_lines, scaling_figures
from tuner.scaling.gather import NoRuns, ScalingPage, gather_scaling

if TYPE_CHECKING:
    from tuner.scaling.fit import ScalingFit
    from tuner.study import StudyHandle


def default_path(name: str) -> Path:
    return Path("dashboards") / f"{name}-scaling.html"


def render_scaling_html(page: ScalingPage) -> str:
    """The whole page: plotly.js inline once, a header with the fit, one section per figure."""
    figs = scaling_figures(page)
    sections = [htmlpage.section(key, title, caption, figs[key]) for key, title, caption in FIGURES]
    complete = sum(r.tried for r in page.runs)
    budgets = len({r.budget for r in page.runs})
    header = (
        f"<h1>scaling study {html.escape(page.study)}</h1><div class='meta'>"
        f"{len(page.runs)} (budget, size) points from {complete} complete trials over "
        f"{budgets} budgets<br>"
        + "<br>".join(fit_lines(page))
        + f"<br>MLflow: experiment <code>{html.escape(page.experiment_id)}</code>, study run "
        f"<code>{html.escape(page.parent_run_id)}</code> · drawn {page.generated}</div>"
    )
    title = f"tuner · {page.study} · scaling"
    return htmlpage.document(title, header, [*sections, f"<script>{_DRAW_JS}</script>"])


def write_scaling_dashboard(
    handle: StudyHandle, path: str | Path | None = None, fit: ScalingFit | None = None
) -> Path:
    """Draw the scaling study to one HTML file (default dashboards/NAME-scaling.html)."""
    page = render_scaling_html(gather_scaling(handle, fit))
    return htmlpage.write(Path(path) if path else default_path(handle.name), page)


def log_scaling_dashboard(handle: StudyHandle, path: str | Path) -> None:
    """Attach the page to the study's parent MLflow run as dashboards/NAME-scaling.html."""
    htmlpage.attach(handle, path, f"{handle.name}-scaling.html")


def publish_scaling(
    handle: StudyHandle, path: str | Path | None = None, fit: ScalingFit | None = None
) -> Path | None:
    """Redraw and attach; None (no error) while no run is complete."""
    try:
        path = write_scaling_dashboard(handle, path, fit)
    except NoRuns:
        return None
    log_scaling_dashboard(handle, path)
    return path


_DRAW_JS = """
for (const node of document.querySelectorAll("script.figure")) {
  const fig = JSON.parse(node.textContent);
  Plotly.newPlot(node.dataset.div, fig.data, fig.layout, {displaylogo: false, responsive: true});
}
"""
