"""`tuner optuna-dashboard NAME`: Optuna's own dashboard on a tuner study's storage.

optuna-dashboard (the optional extra `tuner[dashboard]`) reads any Optuna storage; it is handed
the storage object itself, so a journal file (which it could only guess from a path) and a
database URL work alike: SQLite, PostgreSQL and any SQLAlchemy URL, opened without creating
or migrating tables. The dashboard is served in this process by wsgiref (optuna-dashboard's
own default server) on 127.0.0.1 unless `--host` says otherwise, quietly: one line with the
study's page, no request log; Ctrl-C or SIGTERM stop it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from tuner import stores
from tuner.errors import ConfigError

EXTRA_HINT = "pip install 'tuner[dashboard]'"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - wsgiref's name
        """No line per request."""


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def dashboard_storage(url: str) -> Any:
    """A plain Optuna storage for `url`: a journal file or a database (no heartbeats, no
    table creation or migration: the dashboard only reads and annotates)."""
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend

    local = stores.local_file(url)
    if local is not None and not local.is_file():
        raise ConfigError(f"--storage {url}: no such file (no studies yet)")
    if stores.is_journal(url):
        return JournalStorage(JournalFileBackend(url))
    try:
        return RDBStorage(url, skip_compatibility_check=True, skip_table_creation=True)
    except Exception as err:  # noqa: BLE001 - any failure to open is the user's URL
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise ConfigError(f"--storage {url}: cannot open storage ({first})") from None


def dashboard_server(
    name: str, storage_url: str | None = None, host: str = "127.0.0.1", port: int = 8080
) -> tuple[WSGIServer, str]:
    """The bound (not yet serving) dashboard server and the URL of the study's page."""
    try:
        from optuna_dashboard import wsgi
    except ImportError:
        raise ConfigError(
            f"optuna-dashboard is not installed; install the extra: {EXTRA_HINT}"
        ) from None
    from tuner.study import locate_study

    stores.check_study_name(name)
    if not 0 <= port < 65536:
        raise ConfigError(f"--port {port}: give a port between 1 and 65535 (0: any free one)")
    url = storage_url or locate_study(name)
    storage = dashboard_storage(url)
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        raise ConfigError(f"no study named {name!r} in {url}") from None
    try:
        server = make_server(
            host, port, wsgi(storage), server_class=_ThreadingServer, handler_class=_QuietHandler
        )
    except OSError as err:
        raise ConfigError(
            f"--port {port}: cannot listen on {host}:{port} ({err.strerror})"
        ) from None
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return server, f"http://{shown}:{server.server_port}/dashboard/studies/{study_id}"


def serve_dashboard(
    name: str,
    storage_url: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the dashboard until Ctrl-C or SIGTERM."""
    server, url = dashboard_server(name, storage_url, host, port)

    def handle(signum: int, frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if on_ready is not None:
            on_ready(url)
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
