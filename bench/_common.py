"""Helpers shared by the benchmark scripts: throwaway stores, machine facts, timing, tables and
result files. Kept here so each script reads as "what is measured", not as plumbing."""

from __future__ import annotations

import atexit
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

RESULTS = Path(os.environ.get("TUNER_BENCH_RESULTS") or Path(__file__).resolve().parent / "results")
"""Where results land: bench/results, or $TUNER_BENCH_RESULTS (bench/gpu_check.sh's folder)."""
SHARED_CACHE = Path(tempfile.gettempdir()) / "tuner-bench-cache"


def use_temp_stores(prefix: str) -> Path:
    """Point TUNER_HOME at a fresh temp folder so a benchmark never touches ./mlruns.

    The token cache stays shared ($TUNER_CACHE_DIR, else a fixed temp folder) so that the
    corpus is tokenized once per machine, not once per benchmark run: every figure is "warm".
    """
    home = Path(tempfile.mkdtemp(prefix=f"tuner-bench-{prefix}-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    os.environ["TUNER_HOME"] = str(home)
    os.environ.setdefault("TUNER_CACHE_DIR", str(SHARED_CACHE))
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    return home


THREADS_HELP = (
    "torch CPU threads for everything this run trains (default 1: on a shared "
    "2-core machine a second OpenMP thread mostly waits at barriers; 0 = torch's "
    "default)"
)


def set_threads(threads: int) -> int:
    """Fix torch's thread count for the whole process (and child processes through
    OMP_NUM_THREADS), so every contender and trial runs with the same number."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)
    return torch.get_num_threads()


def quiet() -> None:
    """Silence library chatter (progress bars, deprecation notes) so the figures stand out."""
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    for name in ("mlflow", "alembic", "optuna", "transformers", "accelerate", "urllib3"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    except ImportError:
        pass


def sqlite_wal_everywhere() -> None:
    """Open every SQLite connection of this process (Optuna's and MLflow's engines alike) in
    WAL mode with synchronous=NORMAL: one commit then costs microseconds instead of several
    fsyncs. An experiment for the benchmarks (what tuner would gain by doing this in
    tuner/stores.py), not something tuner does today."""
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()


def machine() -> dict[str, Any]:
    """What the figures were measured on; printed with every result because ratios drift."""
    import torch

    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    for name in ("transformers", "optuna", "mlflow", "accelerate"):
        try:
            info[name] = __import__(name).__version__
        except ImportError:
            info[name] = "missing"
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def machine_line(info: dict[str, Any] | None = None) -> str:
    info = info or machine()
    return ", ".join(f"{k} {v}" for k, v in info.items())


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def tuner_command() -> list[str]:
    """`tuner` as a user runs it: the console script beside this interpreter (not a pyenv
    shim on PATH, a bash script that adds ~0.1 s before Python starts), else `python -m`."""
    script = Path(sys.executable).with_name("tuner")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "tuner"]


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """`with stopwatch() as t: ...` then `t[0]` is the elapsed seconds."""
    box = [0.0]
    start = time.perf_counter()
    try:
        yield box
    finally:
        box[0] = time.perf_counter() - start


def rotations(names: Sequence[str], repeats: int) -> list[list[str]]:
    """ABC, BCA, CAB, ...: every contender runs in every position, so a slow patch of a shared
    machine (another process waking up) hits each one about equally."""
    names = list(names)
    return [names[r % len(names) :] + names[: r % len(names)] for r in range(repeats)]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def si(value: float, unit: str = "") -> str:
    """1.23e9 -> '1.23 G' (figures spanning many decades stay readable)."""
    for prefix, size in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".rstrip()


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub table, printable as it is and pasteable into the README."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "| " + " | ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells
    ]
    return "\n".join([line, rule, *body])


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def save_results(name: str, payload: dict[str, Any], markdown: str) -> Path:
    """bench/results/NAME.json (every figure) and NAME.md (what was printed): small text only."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    path = RESULTS / f"{name}.md"
    path.write_text(markdown.rstrip() + "\n")
    return path


def write_html(fig: Any, name: str) -> Path:
    """A plotly figure as HTML that loads plotly.js from its CDN, so the file stays a few
    kilobytes (PNG export needs kaleido and a browser, which this offline machine lacks)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.html"
    fig.write_html(str(path), include_plotlyjs="cdn", full_html=True)
    return path


class Report:
    """Collects printed lines so that exactly what the terminal showed lands in results/*.md."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)
