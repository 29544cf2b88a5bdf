"""Opening stores: an Optuna storage from a URL, a first look at an MLflow store.

Whatever goes wrong is one line: a URL tuner cannot use is bad input (`ConfigError`, exit 2);
a store that will not open — unreachable, locked, corrupt, read-only, full — is a
`StoreError` (exit 1) naming the store and the cause. Waits are bounded by
TUNER_STORE_TIMEOUT (tuner.stores.store_timeout).
"""

from __future__ import annotations

import contextlib
from typing import Any

import optuna

from tuner import failures, stores
from tuner.errors import ConfigError, StoreError
from tuner.files import file_lock
from tuner.heartbeat import JournalHeartbeatStorage, StaleTrialCallback, heartbeat_settings
from tuner.quiet import experimental_ok
from tuner.tracking import Tracker


def open_storage(url: str | None, must_exist: bool = False) -> optuna.storages.BaseStorage:
    """An Optuna storage for `url` (default: SQLite under ./mlruns). Journal files end in .log.

    Every storage beats a heartbeat for running trials, so a trial whose worker died is failed
    after the grace period and retried once (see tuner.heartbeat). A URL tuner cannot use is
    bad input (ConfigError); a store that will not open (unreachable, locked, corrupt,
    read-only) is a StoreError; both are one line.
    """
    url = url or stores.default_storage()
    stores.check_persistent(url, "--storage")
    local = stores.local_file(url)
    if must_exist and local is not None and not local.is_file():
        kind = "journal file" if stores.is_journal(url) else "database"
        raise ConfigError(f"--storage {url}: no such {kind} (no studies yet)")
    interval, grace = heartbeat_settings()
    try:
        if stores.is_journal(url):
            from optuna.storages.journal import JournalFileBackend

            stores.ensure_local(url)
            return JournalHeartbeatStorage(
                JournalFileBackend(url), interval, grace, StaleTrialCallback()
            )
        if "://" not in url:
            raise ValueError("not a URL")
        stores.ensure_local(url)
        with _first_creation(url), experimental_ok():  # heartbeats are chosen on purpose
            return optuna.storages.RDBStorage(
                url,
                heartbeat_interval=interval,
                grace_period=grace,
                heartbeat_stale_trial_callback=StaleTrialCallback(),
                engine_kwargs=_engine_kwargs(url),
            )
    except Exception as err:  # noqa: BLE001 - said as one line below
        found = failures.store_failure(err)
        if found is not None:
            why = failures.describe(found)
            shown = stores.display(url)
            raise StoreError(f"--storage {shown}: cannot open storage ({why})") from None
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise ConfigError(f"--storage {url}: cannot open storage ({first})") from None


def _first_creation(url: str) -> contextlib.AbstractContextManager:
    """Two processes creating the same new SQLite database race on its tables ("table studies
    already exists"); the first creation of one is serialised by a lock file beside it."""
    path = stores.sqlite_path(url)
    if path is None or (path.is_file() and path.stat().st_size > 0):
        return contextlib.nullcontext()
    return file_lock(path.with_name(path.name + ".lock"))


def _engine_kwargs(url: str) -> dict[str, Any]:
    """Bounded waits: a SQLite lock for twice TUNER_STORE_TIMEOUT (other local processes
    write in milliseconds), a database server's connection for TUNER_STORE_TIMEOUT."""
    timeout = stores.store_timeout()
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 2 * timeout}}
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith(("postgresql", "mysql")):
        kwargs["connect_args"] = {"connect_timeout": max(1, round(timeout))}
    return kwargs


def probe_tracking(uri: str) -> None:
    """Fail in seconds, writing nothing, if the MLflow store cannot be used: a server that
    does not answer, a SQLite file that is not a database or cannot be written."""
    db = stores.sqlite_path(uri)
    label = failures.mlflow_label(uri)
    if db is not None:
        failures.probe_local(db, label)
    elif stores.is_server(uri):
        Tracker(uri).client.search_experiments(max_results=1)
