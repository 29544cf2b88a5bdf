"""`tuner ui` starts MLflow's server as one unit and stops all of it: SIGTERM or Ctrl-C to tuner
leaves no process of the server, frees the port and prints no traceback; start-up prints tuner's
lines only."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest

from tests.conftest import free_port
from tests.helpers import cli


def port_is_free(port: int) -> bool:
    """Whether a new server could listen on the port now (servers set SO_REUSEADDR, so a
    closed connection's TIME_WAIT does not count; a process still listening does)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_healthy(proc: subprocess.Popen, port: int, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
                if reply.read().strip() == b"OK":
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail("tuner ui did not start")


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_tuner_ui_stops_every_process_and_frees_the_port(stop):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuner", "ui", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # the signal goes to tuner alone, as from `kill` or systemd
    )
    try:
        wait_healthy(proc, port)
        server = psutil.Process(proc.pid).children(recursive=True)
        assert any("mlflow" in " ".join(p.cmdline()) for p in server)
        time.sleep(1)  # tuner prints its line once the server answers
        proc.send_signal(stop)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    left = [p for p in server if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, [p.cmdline() for p in left]
    assert port_is_free(port)
    lines = output.strip().splitlines()
    assert lines[0] == (
        f"MLflow UI on http://127.0.0.1:{port} (store {_store()}); Ctrl-C to stop"
    ), output
    assert lines[-1] == "stopping the MLflow UI ...", output
    for noise in ("Traceback", "KeyboardInterrupt", "INFO", "Warning", "warn"):
        assert noise not in output, output


def _store() -> str:
    from tuner import stores

    return stores.default_tracking_uri()


def test_a_taken_port_is_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("ui", "--port", str(port))
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: --port {port}: cannot listen on 127.0.0.1:{port} (Address already in use)"
    )
