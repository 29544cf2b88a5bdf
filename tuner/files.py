"""Files written safely: atomic replacement and cross-process locks, in one place.

Parallel workers share the token cache, dashboards and exported configs: a reader must see the
old file or the new one, never half of one, and only one process may build a shared folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from tuner.errors import ConfigError


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_parent(path: Path, flag: str) -> None:
    """Create the folder a file is about to be written into; one line if that is not possible."""
    parent = path.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        why = err.strerror or type(err).__name__
        raise ConfigError(f"{flag} {path}: cannot create folder {parent} ({why})") from None
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"{flag} {path}: folder {parent} is not writable")


def atomic_write(path: str | Path, content: str | bytes) -> Path:
    """Write to a temporary file beside `path`, then rename it over `path` in one step.

    The file gets the usual permissions (0666 less the umask), not mkstemp's owner-only ones.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content.encode("utf-8") if isinstance(content, str) else content)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class DestinationTaken(OSError):
    """The staged folder could not replace its destination; it is kept at `staged`."""

    def __init__(self, final: Path, staged: Path):
        super().__init__(f"{final} is taken; the staged folder is kept at {staged}")
        self.staged = staged


@contextlib.contextmanager
def staged_dir(final: Path) -> Iterator[Path]:
    """A hidden sibling folder to fill; on success it is renamed to `final` in one step.

    `final` may be missing or an empty folder. An error while filling removes the staged
    folder; a destination that filled up meanwhile raises `DestinationTaken`, keeping it.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()  # (mkdtemp would make the folder readable by its owner only)
    try:
        yield tmp
        for path in tmp.iterdir():  # some writers (safetensors) leave files owner-only
            if path.is_file():
                path.chmod(0o666 & ~current_umask())
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        os.replace(tmp, final)
    except OSError:
        raise DestinationTaken(final, tmp) from None


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """An exclusive lock held on `path` (created if missing) across processes."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
