"""The frame every tuner dashboard shares: one self-contained HTML page of plotly figures
(plotly.js inline once, figures as JSON drawn by the page's own script), written atomically and
attached to the study's MLflow parent run."""

from __future__ import annotations

import html
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from tuner.files import atomic_write

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from tuner.study import StudyHandle

CSS = (
    "body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:16px;"
    "color:#222}h1{margin:0 0 4px}h2{margin:28px 0 2px;font-size:1.15em}"
    "section p{margin:0 0 6px;color:#555;font-size:.9em}.meta{color:#555;font-size:.9em}"
    "code{background:#f3f3f3;padding:1px 4px;border-radius:3px}"
)


def script_json(text: str) -> str:
    """JSON safe inside a <script> element: a trial's reason could contain '</script>'."""
    return text.replace("</", "<\\/")


def section(key: str, title: str, caption: str, fig: go.Figure) -> str:
    """A titled figure; the page's script draws it from the JSON beside its div."""
    height = fig.layout.height or 460
    return (
        f'<section id="{key}"><h2>{html.escape(title)}</h2><p>{html.escape(caption)}</p>'
        f'<div id="fig-{key}" class="plotly-graph-div" style="height:{height}px;width:100%">'
        f'</div><script type="application/json" class="figure" data-div="fig-{key}">'
        f"{script_json(fig.to_json(validate=False))}</script></section>"
    )


def document(title: str, header: str, body: list[str]) -> str:
    """The whole page: `header` and `body` are HTML, the last of `body` the drawing script."""
    from plotly.offline import get_plotlyjs

    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style>"
        f"<script>{get_plotlyjs()}</script></head><body>{header}\n"
        + "\n".join(body)
        + "</body></html>\n"
    )


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, text)  # workers may redraw at once: never half a page


def attach(handle: StudyHandle, path: str | Path, filename: str) -> None:
    """Attach the page to the study's parent MLflow run as dashboards/FILENAME."""
    with tempfile.TemporaryDirectory(prefix="tuner-dashboard-") as tmp:
        staged = Path(tmp) / filename
        shutil.copyfile(path, staged)
        handle.tracker().log_artifact(handle.parent_run_id, staged, "dashboards")
