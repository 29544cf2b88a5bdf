"""System metrics beside the loss: CPU, memory, disk, network and GPU use while a run trains.

MLflow's samplers (psutil; nvidia-ml-py for NVIDIA GPUs when installed) give the usual names,
`system/cpu_utilization_percentage`, `system/gpu_0_utilization_percentage`, ..., which the UI
groups under "System metrics". MLflow's own `SystemMetricsMonitor` is not used: it logs through
a client of its own, outside the lock every tuner writer holds on a SQLite store, and reads the
run back after every sample. Here one daemon thread samples every `interval` seconds and hands
the samples to the Tracker once a minute and when the run ends (a closing sample is taken
then, so a run shorter than the interval still gets one).

`TUNER_SYSTEM_METRICS` sets the interval in seconds (default 10; 0 turns them off).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from tuner.errors import ConfigError

ENV = "TUNER_SYSTEM_METRICS"
DEFAULT_INTERVAL = 10.0
FLUSH_SECONDS = 60.0
PREFIX = "system/"


def interval_setting() -> float:
    """Seconds between samples from $TUNER_SYSTEM_METRICS (0 = off)."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return DEFAULT_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ConfigError(f"{ENV}={raw!r}: give the seconds between samples (0 turns them off)")
    return value


def samplers() -> list[Any]:
    """MLflow's CPU/memory, disk and network samplers, and a GPU sampler where one works."""
    from mlflow.system_metrics.metrics.cpu_monitor import CPUMonitor
    from mlflow.system_metrics.metrics.disk_monitor import DiskMonitor
    from mlflow.system_metrics.metrics.network_monitor import NetworkMonitor

    found: list[Any] = [CPUMonitor(), DiskMonitor(), NetworkMonitor()]
    gpu = _gpu_sampler()
    if gpu is not None:
        with contextlib.suppress(Exception):  # the GPU went away: no GPU figures
            found.append(gpu())
    return found


@functools.cache
def _gpu_sampler() -> Any:
    """MLflow's NVIDIA (nvidia-ml-py) or AMD (pyrsmi) sampler class if one works here, looked
    up once a process."""
    for module, name in (
        ("mlflow.system_metrics.metrics.gpu_monitor", "GPUMonitor"),
        ("mlflow.system_metrics.metrics.rocm_monitor", "ROCMMonitor"),
    ):
        try:
            sampler = getattr(importlib.import_module(module), name)
            sampler()
            return sampler
        except Exception:  # noqa: BLE001 - no such GPU or library
            continue
    return None


Point = tuple[dict[str, float], int, int]
"""One sample: {metric name: value}, step, timestamp in milliseconds."""


class SystemMetrics:
    """Samples system use in a daemon thread every `interval` seconds; `log(points)` receives
    them in batches, every `flush_every` seconds and when sampling stops (one store write a
    minute, not one a sample: a SQLite write costs far more than reading the counters)."""

    def __init__(
        self,
        log: Callable[[list[Point]], None],
        interval: float,
        flush_every: float = FLUSH_SECONDS,
    ):
        self.log = log
        self.interval = interval
        self.flush_every = flush_every
        self.samplers = samplers()
        self.step = 0
        self.points: list[Point] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> SystemMetrics:
        self._read()  # psutil's CPU percentage counts from its previous call
        self._sampled = self._flushed = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="tuner-system-metrics", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling, take a closing sample (so a short run gets one) and log the rest."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        if self.step == 0 or time.monotonic() - self._sampled >= 1.0:
            self.sample()
        self.flush()

    def sample(self) -> None:
        values = self._read()
        with self._lock:
            self.points.append((values, self.step, int(time.time() * 1000)))
            self.step += 1
        self._sampled = time.monotonic()

    def flush(self) -> None:
        with self._lock:
            points, self.points = self.points, []
        if points:
            self.log(points)
        self._flushed = time.monotonic()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample()
                if time.monotonic() - self._flushed >= self.flush_every:
                    self.flush()
            except Exception:  # noqa: BLE001 - a monitoring hiccup never stops a training run
                return

    def _read(self) -> dict[str, float]:
        values: dict[str, float] = {}
        for sampler in self.samplers:
            sampler.collect_metrics()
            values |= {PREFIX + k: float(v) for k, v in sampler.aggregate_metrics().items()}
            sampler.clear_metrics()
        return values
