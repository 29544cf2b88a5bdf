"""Store failures recognised and said in one line: full, locked, corrupt, read-only, refused.

Optuna and MLflow report a broken store in many shapes (SQLAlchemy errors wrapped in MLflow
exceptions, `OSError`s from a journal file, HTTP retries that gave up), often chained under
the error they caused next. `store_failure` finds the store's own error anywhere in that
chain, `describe` says what happened in a few words, and `guard` / `GuardedClient` turn it
into a `StoreError` naming the store: one line for the user, exit code 1.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tuner import stores
from tuner.errors import StoreError, TunerError

# (text in the error, what the user is told); the first match wins
CAUSES = (
    ("database or disk is full", "the disk is full (database or disk is full)"),
    ("no space left on device", "the disk is full (no space left on device)"),
    ("disk quota exceeded", "the disk quota is exceeded"),
    ("database is locked", "the database is locked by another process"),
    ("file is not a database", "the file is corrupt (not a database)"),
    ("database disk image is malformed", "the file is corrupt (malformed database)"),
    ("attempt to write a readonly database", "the database is read-only"),
    ("read-only file system", "the file system is read-only"),
    ("readonly database", "the database is read-only"),
    ("permission denied", "permission denied"),
    ("unable to open database file", "the database file cannot be opened"),
    ("no such table", "not a store of this kind (tables missing)"),
    ("connection refused", "connection refused (is the server running?)"),
    ("max retries exceeded", "the server did not answer"),
    ("name or service not known", "unknown host"),
    ("could not translate host name", "unknown host"),
    ("timed out", "timed out"),
    ("timeout expired", "timed out"),
    ("could not connect to server", "cannot connect to the server"),
    ("connection to server", "cannot connect to the server"),
    ("server closed the connection", "the server closed the connection"),
)
STORE_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.EIO,
    errno.ECONNREFUSED,
}
DB_ERRORS = ("OperationalError", "DatabaseError", "InterfaceError", "InternalError")


def chain(err: BaseException) -> Iterator[BaseException]:
    """`err`, then its causes and contexts, each once."""
    seen: set[int] = set()
    todo = [err]
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [e.__cause__, e.__context__]


def _is_store_exc(e: BaseException) -> bool:
    if isinstance(e, OSError) and e.errno in STORE_ERRNOS:
        return True
    module = type(e).__module__ or ""
    if type(e).__name__ in DB_ERRORS and module.startswith(("sqlalchemy", "sqlite3", "psycopg")):
        return True
    if module.startswith(("requests", "urllib3")) and "Connection" in type(e).__name__:
        return True
    if type(e).__name__ in ("ConnectionError", "ConnectTimeout", "ReadTimeout", "Timeout"):
        return True
    text = str(e).lower()
    return module.startswith("mlflow") and any(key in text for key, _ in CAUSES)


def store_failure(err: BaseException) -> BaseException | None:
    """The store failure behind `err`: itself, a cause or a context; None if there is none."""
    for e in chain(err):
        if isinstance(e, StoreError) or _is_store_exc(e):
            return e
    return None


def describe(err: BaseException) -> str:
    """What went wrong with the store, in a few words."""
    if isinstance(err, StoreError):
        return str(err)
    texts = [str(e).lower() for e in chain(err)]
    for key, said in CAUSES:
        if any(key in text for text in texts):
            return said
    if isinstance(err, OSError) and err.strerror:
        where = f" ({err.filename})" if err.filename else ""
        return f"{err.strerror.lower()}{where}"
    first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
    return first or type(err).__name__


def as_store_error(err: BaseException, label: str) -> StoreError | None:
    """A StoreError for the store failure behind `err` (`label` names the store), or None."""
    found = store_failure(err)
    if found is None:
        return None
    if isinstance(found, StoreError):
        return found
    return StoreError(f"{label}: {describe(found)}")


@contextlib.contextmanager
def guard(label: str) -> Iterator[None]:
    """Turn a store failure raised inside the block into one `StoreError` line."""
    try:
        yield
    except TunerError:
        raise
    except Exception as err:
        found = as_store_error(err, label)
        if found is None:
            raise
        raise found from None


def optuna_label(url: str) -> str:
    return f"Optuna storage {stores.display(url)}"


def mlflow_label(uri: str) -> str:
    return f"MLflow store {stores.display(uri)}"


class GuardedClient:
    """An `MlflowClient` (or a wrapper of one) whose store failures raise `StoreError`.

    Other MLflow errors (a run not found, a name taken) pass through unchanged: callers
    catch those on purpose.
    """

    def __init__(self, client: Any, uri: str):
        self._client = client
        self._label = mlflow_label(uri)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            with guard(self._label):
                return attr(*args, **kwargs)

        return guarded


def bound_http_waits() -> None:
    """MLflow retries an unreachable server for minutes by default; tuner bounds each request
    by TUNER_STORE_TIMEOUT and retries twice (1 s, 2 s), unless the user set MLflow's own
    variables."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, round(stores.store_timeout()))))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0")


def guard_client(client: Any, uri: str) -> GuardedClient:
    """`client` with store failures as `StoreError`, and bounded waits for a remote server.

    MLflow also logs every database error it raises, traceback and all; tuner says each one
    itself, in one line, so that logger is quietened.
    """
    if stores.is_server(uri):
        bound_http_waits()
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    return GuardedClient(client, uri)


def probe_local(path: Path, label: str) -> None:
    """A SQLite store file that exists must be a database tuner can write; one that does not
    exist yet must be creatable. Raises StoreError; reads only, writes nothing."""
    path = Path(path).absolute()
    if path.is_dir():
        raise StoreError(f"{label}: {path} is a folder, not a database file")
    if path.exists():
        try:
            con = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=2)
            try:
                con.execute("SELECT count(*) FROM sqlite_master").fetchone()
            finally:
                con.close()
        except sqlite3.Error as err:
            raise StoreError(f"{label}: {describe(err)}") from None
        if not os.access(path, os.R_OK | os.W_OK) or not os.access(path.parent, os.W_OK):
            raise StoreError(f"{label}: permission denied (cannot write {path} or its folder)")
        return
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise StoreError(f"{label}: cannot create {path} (folder {folder} is not writable)")
