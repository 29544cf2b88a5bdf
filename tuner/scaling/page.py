"""The scaling dashboard, page step: figures (tuner.scaling.figures) -> one self-contained
HTML file (plotly.js inlined, opens offline), `dashboards/NAME-scaling.html`, attached to the
study's MLflow parent run beside the study's own dashboard. `publish_scaling` is the redraw
that `tuner.page.publish` calls for a scaling study, so every run path keeps it current.
"""

from __future__ import annotations

import html
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from tuner.files import atomic_write
from tuner.scaling.figures import FIGURES, fit_lines, scaling_figures
from tuner.scaling.gather import NoRuns, ScalingPage, gather_scaling

if TYPE_CHECKING:
    from tuner.scaling.fit import ScalingFit
    from tuner.study import StudyHandle


def default_path(name: str) -> Path:
    return Path("dashboards") / f"{name}-scaling.html"


def render_scaling_html(page: ScalingPage) -> str:
    """The whole page: plotly.js inline once, a header with the fit, one section per figure."""
    from plotly.offline import get_plotlyjs

    figs = scaling_figures(page)
    sections = []
    for key, title, caption in FIGURES:
        height = figs[key].layout.height or 460
        sections.append(
            f'<section id="{key}"><h2>{html.escape(title)}</h2><p>{html.escape(caption)}</p>'
            f'<div id="fig-{key}" style="height:{height}px;width:100%"></div>'
            f'<script type="application/json" class="figure" data-div="fig-{key}">'
            f"{_script_json(figs[key].to_json(validate=False))}</script></section>"
        )
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
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>tuner · {html.escape(page.study)} · scaling</title><style>{_CSS}</style>"
        f"<script>{get_plotlyjs()}</script></head><body>{header}\n"
        + "\n".join(sections)
        + f"\n<script>{_DRAW_JS}</script></body></html>\n"
    )


def write_scaling_dashboard(
    handle: StudyHandle, path: str | Path | None = None, fit: ScalingFit | None = None
) -> Path:
    """Draw the scaling study to one HTML file (default dashboards/NAME-scaling.html)."""
    page = render_scaling_html(gather_scaling(handle, fit))
    path = Path(path) if path else default_path(handle.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, page)


def log_scaling_dashboard(handle: StudyHandle, path: str | Path) -> None:
    """Attach the page to the study's parent MLflow run as dashboards/NAME-scaling.html."""
    with tempfile.TemporaryDirectory(prefix="tuner-scaling-") as tmp:
        staged = Path(tmp) / f"{handle.name}-scaling.html"
        shutil.copyfile(path, staged)
        handle.tracker().log_artifact(handle.parent_run_id, staged, "dashboards")


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


def _script_json(text: str) -> str:
    """JSON safe inside a <script> element."""
    return text.replace("</", "<\\/")


_DRAW_JS = """
for (const node of document.querySelectorAll("script.figure")) {
  const fig = JSON.parse(node.textContent);
  Plotly.newPlot(node.dataset.div, fig.data, fig.layout, {displaylogo: false, responsive: true});
}
"""

_CSS = (
    "body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:16px;"
    "color:#222}h1{margin:0 0 4px}h2{margin:28px 0 2px;font-size:1.15em}"
    "section p{margin:0 0 6px;color:#555;font-size:.9em}.meta{color:#555;font-size:.9em}"
    "code{background:#f3f3f3;padding:1px 4px;border-radius:3px}"
)
