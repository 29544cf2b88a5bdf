"""A moved or copied home keeps working: MLflow's artifact locations follow their database.

tuner keeps a study's artifacts beside its SQLite MLflow store (`D/mlflow.db` ->
`D/artifacts/STUDY`), but MLflow writes each experiment's and run's artifact location into
the database as an absolute `file://` URI. After the folder moves (or is copied), those URIs
point at the old place: runs would write there, or fail. On opening a SQLite store at `D`,
`follow_moves` rewrites every `file://OLD/artifacts/...` location tuner made to
`file://D/artifacts/...`. MLflow has no API to change an artifact location, so this edits its
tables directly: only the location columns below, checked against the schema first, under
the same lock every tuner writer of that store holds.

(The Optuna side needs nothing: studies record their MLflow store relative to the home,
see `stores.portable`.)
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from urllib.parse import unquote, urlparse

from tuner import stores
from tuner.files import file_lock

LOCATION_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "source"),
    ("model_versions", "storage_location"),
)


def old_roots(db: Path) -> set[Path]:
    """Folders that held this database when tuner created its experiments, other than now."""
    here = db.resolve().parent
    roots = set()
    with contextlib.closing(_connect(db)) as con:
        if not _has_column(con, "experiments", "artifact_location"):
            return set()
        rows = con.execute("SELECT name, artifact_location FROM experiments").fetchall()
    for name, location in rows:
        path = _file_path(location or "")
        if path is None or path.name != name or path.parent.name != "artifacts":
            continue
        if path.parent.parent != here:
            roots.add(path.parent.parent)
    return roots


def follow_moves(tracking_uri: str) -> int:
    """Point the artifact locations of a moved SQLite MLflow store at its new folder;
    returns how many rows changed (0 for other stores, or when nothing moved)."""
    db = stores.sqlite_path(tracking_uri)
    if db is None or not db.is_file():
        return 0
    roots = old_roots(db)
    if not roots:
        return 0
    new = (db.resolve().parent / "artifacts").as_uri() + "/"
    changed = 0
    lock = file_lock(db.with_name(db.name + ".lock"))
    with lock, contextlib.closing(_connect(db)) as con, con:
        for root in roots:
            old = (root / "artifacts").as_uri() + "/"
            for table, column in LOCATION_COLUMNS:
                if not _has_column(con, table, column):
                    continue
                cursor = con.execute(
                    f"UPDATE {table} SET {column} = ? || substr({column}, ?) "  # noqa: S608
                    f"WHERE substr({column}, 1, ?) = ?",
                    (new, len(old) + 1, len(old), old),
                )
                changed += cursor.rowcount
    return changed


def _connect(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(str(db), timeout=stores.store_timeout())


def _has_column(con: sqlite3.Connection, table: str, column: str) -> bool:
    return any(row[1] == column for row in con.execute(f"PRAGMA table_info({table})"))


def _file_path(uri: str) -> Path | None:
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        return None
    return Path(unquote(parsed.path))
