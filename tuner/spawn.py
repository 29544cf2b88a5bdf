"""Local worker processes: `tuner study worker` started K times with this interpreter."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def worker_command(
    name: str, storage_url: str, tracking_uri: str, timeout: float | None = None
) -> list[str]:
    """`tuner study worker ...` as `python -m tuner` (works without the console script)."""
    cmd = [sys.executable, "-m", "tuner", "study", "worker", name]
    cmd += ["--storage", storage_url, "--tracking-uri", tracking_uri]
    return cmd + (["--timeout", str(timeout)] if timeout else [])


def start_workers(
    name: str, storage_url: str, tracking_uri: str, n_workers: int, timeout: float | None = None
) -> list[subprocess.Popen]:
    """Start `n_workers` worker processes; each gets an equal share of the CPU threads."""
    env = dict(os.environ)
    threads = str(max(1, (os.cpu_count() or 1) // n_workers))
    env.setdefault("OMP_NUM_THREADS", threads)
    env.setdefault("MKL_NUM_THREADS", threads)
    cmd = worker_command(name, storage_url, tracking_uri, timeout)
    return [subprocess.Popen(cmd, env=env) for _ in range(n_workers)]


def wait_workers(procs: list[subprocess.Popen], grace_s: float = 30.0) -> list[int]:
    """Wait for every worker; on Ctrl-C interrupt them (their trials end KILLED in MLflow),
    then kill any still alive after `grace_s`. Returns the exit codes."""
    try:
        return [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        deadline = time.monotonic() + grace_s
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        raise
