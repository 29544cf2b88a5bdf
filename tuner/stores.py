"""Where things live: the default local store under ./mlruns and the URLs that replace it.

Layout of the local store (TUNER_HOME, default ./mlruns):
    optuna.db            Optuna storage (SQLite), one local worker
    optuna-journal.log   Optuna journal storage, several local workers
    mlflow.db            MLflow backend (SQLite)
    artifacts/           MLflow artifacts
    cache/               tokenizers and token arrays, shared by all trials and workers
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from tuner.errors import ConfigError

STUDY_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,98}[A-Za-z0-9_-])?$")
SQLITE = "sqlite:///"
HOME_TOKEN = "{TUNER_HOME}"
"""Stands for the home folder in stored store locations, so a moved or copied home still works."""


def home() -> Path:
    return Path(os.environ.get("TUNER_HOME", "mlruns")).resolve()


def cache_dir() -> Path:
    return Path(os.environ.get("TUNER_CACHE_DIR", home() / "cache")).resolve()


def default_storage() -> str:
    return f"{SQLITE}{home() / 'optuna.db'}"


def default_journal() -> str:
    """The default storage of a study created with several local workers: a journal file."""
    return str(home() / "optuna-journal.log")


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"{SQLITE}{home() / 'mlflow.db'}"


def artifact_root() -> str:
    return (home() / "artifacts").as_uri()


def sqlite_path(url: str) -> Path | None:
    """The database file of a `sqlite:///PATH` URL, else None."""
    return Path(url[len(SQLITE) :]) if url.startswith(SQLITE) else None


def is_server(uri: str) -> bool:
    """An http(s) URI: an MLflow tracking server, reached over REST."""
    return uri.startswith(("http://", "https://"))


def is_journal(url: str) -> bool:
    """A plain path ending in .log is an Optuna journal file."""
    return "://" not in url and url.endswith(".log")


def local_file(url: str) -> Path | None:
    """The file behind a local store URL (SQLite database or journal), else None."""
    return sqlite_path(url) or (Path(url) if is_journal(url) else None)


def default_storages() -> list[str]:
    """The default Optuna storages that exist on disk: SQLite first, then the journal file."""
    urls = [default_storage(), default_journal()]
    return [u for u in urls if local_file(u).is_file()]


def check_study_name(name: str) -> str:
    """Study names become experiment names and file names: letters, digits, `_.-` only,
    starting with a letter or digit and not ending in '.' (a file name some systems cut)."""
    if not STUDY_NAME.match(name) or ".." in name:
        raise ConfigError(
            f"study name {name!r}: use letters, digits, '_', '.', '-' "
            "(starting with a letter or digit, not ending in '.', no path separators), "
            "at most 100 characters"
        )
    return name


def check_persistent(url: str, flag: str) -> str:
    """Refuse a SQLite URL without a file: an in-memory database is lost when tuner exits."""
    if url.startswith("sqlite:") and "://" in url:
        path = url.split("://", 1)[1].lstrip("/").split("?", 1)[0]
        if not path or path == ":memory:" or "mode=memory" in url:
            raise ConfigError(
                f"{flag} {url}: an in-memory SQLite database is lost when tuner exits; "
                "name a file, e.g. sqlite:///mlruns/optuna.db"
            )
    return url


def portable(uri: str) -> str:
    """`uri` with the home folder written as {TUNER_HOME}, for records kept in a store."""
    path = sqlite_path(uri)
    if path is None:
        return uri
    try:
        inner = path.resolve().relative_to(home())
    except ValueError:
        return uri
    return f"{SQLITE}{HOME_TOKEN}/{inner.as_posix()}"


def resolve(uri: str) -> str:
    """A stored location made concrete again under the current home (see `portable`)."""
    return uri.replace(HOME_TOKEN, str(home())) if HOME_TOKEN in uri else uri


def store_timeout() -> float:
    """TUNER_STORE_TIMEOUT (seconds, default 30): the longest one store operation may keep
    tuner waiting — connecting to a database server, one HTTP request to a tracking server,
    a SQLite lock held by another process — before it fails with one line."""
    raw = os.environ.get("TUNER_STORE_TIMEOUT", "").strip()
    if not raw:
        return 30.0
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value < 86_400:
        raise ConfigError(f"TUNER_STORE_TIMEOUT={raw!r}: expected seconds, more than 0")
    return value


def display(url: str) -> str:
    """A store URL fit for a message: any password replaced by ***."""
    return re.sub(r"(://[^/:@]*:)[^/@]*@", r"\1***@", url)


def ensure_local(url: str) -> None:
    """Create the folder of a local SQLite or journal file store before first use."""
    path = sqlite_path(url) or (Path(url) if "://" not in url else None)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    if sqlite_path(url) is not None:
        use_sqlite_wal()


_WAL_ON = False


def use_sqlite_wal() -> None:
    """Open every SQLite connection of this process (Optuna's and MLflow's) in WAL mode with
    synchronous=NORMAL.

    Durability: a commit is in the write-ahead log before it returns, so a crash or SIGKILL of
    tuner loses nothing committed (tests/test_durability.py kills a study mid-run); only a power
    loss or OS crash can drop the last commits, never corrupt the file. In exchange a commit
    costs microseconds instead of several fsyncs, and readers (the MLflow UI, `study show`)
    no longer block the writer. TUNER_SQLITE_WAL=0 keeps SQLite's defaults (for a database
    on a network file system, where WAL does not work).
    """
    global _WAL_ON
    if _WAL_ON or os.environ.get("TUNER_SQLITE_WAL", "1") == "0":
        return
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _pragmas(connection: object, _record: object) -> None:
        if isinstance(connection, sqlite3.Connection):
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    _WAL_ON = True
