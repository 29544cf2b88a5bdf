"""`tuner ui`: MLflow's server on tuner's store, started and stopped as one unit.

`mlflow server` is a process tree: the CLI process, uvicorn and its workers, and (unless
turned off) a job runner with a handful of huey consumers for MLflow's GenAI jobs, which
tuner does not use and which are turned off here. The tree gets a session of its own, so a
Ctrl-C at the terminal reaches tuner alone (no KeyboardInterrupt tracebacks from the
server's processes); tuner then stops the whole tree: SIGTERM to its process group, SIGKILL to
whatever is left after a grace period, and returns once no process of it remains and the port
is free. SIGTERM to tuner does the same.

The server's start-up chatter (INFO lines, warnings about defaults) is held back; warnings and
errors that come later pass through, and if the server dies the last lines it printed are
shown.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable
from types import FrameType
from typing import IO, TYPE_CHECKING

from tuner import mlflow_ui, stores
from tuner.errors import ConfigError, StoreError

if TYPE_CHECKING:
    from tuner.tracking import Tracker

GRACE_SECONDS = 10.0
START_TIMEOUT = 180.0
_NOISE = re.compile(
    r"\bINFO\b|DeprecationWarning|FutureWarning|^\s*warnings\.warn|"
    r"Registry store URI not provided|Security middleware enabled|Waiting for application|"
    r"Started server process|Application startup complete|Uvicorn running on"
)


def server_command(uri: str, host: str, port: int, workers: int) -> list[str]:
    """The `mlflow server` command line for a tracking store."""
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri]
    cmd += ["--host", host, "--port", str(port), "--workers", str(workers)]
    if uri.startswith(stores.SQLITE):
        cmd += ["--default-artifact-root", stores.artifact_root()]
    return cmd


def server_env() -> dict[str, str]:
    """The server's environment: no GenAI job runner, no warnings about defaults."""
    return {
        **os.environ,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "PYTHONWARNINGS": "ignore::DeprecationWarning,ignore::FutureWarning",
    }


def check_port(host: str, port: int) -> None:
    if not 0 < port < 65536:
        raise ConfigError(f"--port {port}: give a port between 1 and 65535")
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            raise ConfigError(
                f"--port {port}: cannot listen on {host}:{port} ({err.strerror})"
            ) from None


def serve(
    uri: str,
    host: str = "127.0.0.1",
    port: int = 5000,
    workers: int = 1,
    on_ready: Callable[[str], None] | None = None,
    on_stop: Callable[[], None] | None = None,
) -> int:
    """Run the MLflow server until it exits, Ctrl-C or SIGTERM; 0 when stopped by a signal.

    `on_ready(url)` runs once the server answers; `on_stop()` when a signal starts the
    shutdown (which waits for every process of the server, up to GRACE_SECONDS)."""
    if workers < 1:
        raise ConfigError(f"--workers {workers}: must be >= 1")
    check_port(host, port)
    proc = subprocess.Popen(
        server_command(uri, host, port, workers),
        env=server_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: our Ctrl-C is not delivered to it
        text=True,
        errors="replace",
    )
    tail: deque[str] = deque(maxlen=40)
    ready = threading.Event()
    reader = threading.Thread(target=_relay, args=(proc.stdout, tail, ready), daemon=True)
    reader.start()
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()
        _signal_group(proc.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
        if _wait_ready(proc, base, stopping):
            ready.set()
            if on_ready is not None:
                on_ready(base)
        while proc.poll() is None and not stopping.is_set():
            time.sleep(0.2)  # wait() would not let the signal handler run
        if stopping.is_set() and on_stop is not None:
            on_stop()
    finally:
        _stop_group(proc)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        reader.join(timeout=2)
    if stopping.is_set():
        return 0
    if proc.returncode != 0:
        last = "\n".join(list(tail)[-15:]) or "(no output)"
        raise StoreError(f"the MLflow server exited with code {proc.returncode}:\n{last}")
    return 0


def _wait_ready(proc: subprocess.Popen, base: str, stopping: threading.Event) -> bool:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None and not stopping.is_set():
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.3)
    return False


def _relay(stream: IO[str] | None, tail: deque[str], ready: threading.Event) -> None:
    """Keep the server's last lines; once it is up, pass its warnings and errors through."""
    if stream is None:
        return
    for line in stream:
        line = line.rstrip()
        tail.append(line)
        if ready.is_set() and line and not _NOISE.search(line):
            print(line, file=sys.stderr, flush=True)


def _signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group, SIGKILL what outlives the grace period, and wait
    until none of it is left (its port is then free)."""
    pgid = proc.pid  # start_new_session: the server leads its own group
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    while time.monotonic() < deadline and _alive(proc, pgid):
        time.sleep(0.1)
    if _alive(proc, pgid):
        _signal_group(pgid, signal.SIGKILL)
        while _alive(proc, pgid):
            time.sleep(0.05)


def _alive(proc: subprocess.Popen, pgid: int) -> bool:
    """Whether any process of the group still runs (zombies being reaped do not count)."""
    proc.poll()
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if entry.isdigit() and _group_and_state(entry) == (pgid, True):
            return True
    if not os.path.isdir("/proc"):  # no /proc (macOS): ask the kernel about the group
        return _signal_group(pgid, 0)
    return False


def _group_and_state(pid: str) -> tuple[int, bool] | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[2]), fields[0] != "Z"  # (pgrp, not a zombie)


def tuner_experiments(uri: str) -> list[tuple[str, str]]:
    """(name, id) of tuner's experiments in a local store, newest first, each tagged for the
    training view (stores written before tuner tagged them get the tags here)."""
    if stores.is_server(uri):
        return []
    db = stores.sqlite_path(uri)
    if db is not None and not db.is_file():
        return []
    from tuner.tracking import Tracker

    tracker = Tracker(uri)
    found = []
    for exp in tracker.client.search_experiments(order_by=["creation_time DESC"]):
        tags = exp.tags
        if "tuner.study" not in tags and tags.get("tuner.kind") != "final":
            continue
        if mlflow_ui.VIEW_TAG_PREFIX + mlflow_ui.VIEW_ID not in tags:
            new = (
                mlflow_ui.final_tags()
                if tags.get("tuner.kind") == "final"
                else mlflow_ui.study_tags(*_objective(tracker, exp.experiment_id), [])
            )
            tracker.tag_experiment(exp.experiment_id, new)
        found.append((exp.name, exp.experiment_id))
    return found


def _objective(tracker: Tracker, experiment_id: str) -> tuple[str, str]:
    runs = tracker.client.search_runs([experiment_id], "tags.`tuner.kind` = 'study'", max_results=1)
    setting = runs[0].data.params.get("objective", "") if runs else ""
    return mlflow_ui.objective_of(setting)
