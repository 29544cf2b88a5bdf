"""PNG pictures of the figures in bench/results, for the README: each HTML figure (plotly.js
from its CDN) is opened offline in headless Chromium with plotly.js inlined, and screenshotted.

  python bench/png.py bench/results/scaling-e2e-quick-*.html   # writes the .png beside each

Needs Debian's chromium and the playwright package (no download: the local browser is used).
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
CDN = re.compile(r"<script charset=\"utf-8\" src=\"https://cdn\.plot\.ly/[^>]*></script>")


def offline_copy(html: Path, folder: Path) -> Path:
    """The page with plotly.js inlined (so it draws with no network)."""
    from plotly.offline import get_plotlyjs

    text = html.read_text(encoding="utf-8")
    inline = f'<script type="text/javascript">{get_plotlyjs()}</script>'
    page = folder / html.name
    page.write_text(CDN.sub(lambda _: inline, text, count=1), encoding="utf-8")
    return page


def screenshot(pages: list[Path], width: int = 900, height: int = 520) -> list[Path]:
    """One PNG per HTML figure, written beside it."""
    from playwright.sync_api import sync_playwright

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("png.py needs chromium on PATH")
    written = []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(Path(tmp) / "profile"),
            executable_path=browser,
            headless=True,
            args=FLAGS,
            viewport={"width": width, "height": height},
            offline=True,
        )
        try:
            for html in pages:
                page = context.new_page()
                page.goto(offline_copy(html, Path(tmp)).as_uri(), timeout=120_000)
                page.wait_for_function(
                    "document.querySelector('.plotly-graph-div .main-svg') !== null",
                    timeout=60_000,
                )
                png = html.with_suffix(".png")
                page.locator(".plotly-graph-div").first.screenshot(path=str(png))
                page.close()
                written.append(png)
        finally:
            context.close()
    return written


if __name__ == "__main__":
    for path in screenshot([Path(p) for p in sys.argv[1:]]):
        print(f"wrote {path}")
