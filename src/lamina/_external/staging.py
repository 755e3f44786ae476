"""Temporary files and folders that are locked while in use, so a later call can remove a killed run's.

A download streams into `.<name>.<random>.part` and an extraction fills `.<name>.<random>.extracting`; the
process that owns one holds an exclusive `flock` on it until it is renamed into place or removed. A process
killed with SIGKILL loses its locks, so any such entry that can be locked is stale and is deleted.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["EXTRACTING", "OLD", "PART", "locked_dir", "locked_file", "remove_stale", "staging_name"]

PART = ".part"
EXTRACTING = ".extracting"
OLD = ".old"
_SUFFIXES = (PART, EXTRACTING, OLD)
_UNLOCKABLE_STALE_AFTER_S = 24 * 3600  # where flock does not exist (Windows), only day-old leftovers go

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def staging_name(final: Path, suffix: str) -> Path:
    """A fresh hidden sibling of `final` for a temporary file or folder: `.<name>.<random><suffix>`."""
    return final.parent / f".{final.name}.{secrets.token_hex(6)}{suffix}"


def _try_lock(fd: int) -> bool:
    """Take an exclusive lock on `fd` without waiting; False when another process holds one."""
    if fcntl is None:  # pragma: no cover - Windows
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def locked_file(path: Path) -> Iterator[int]:
    """Create `path` exclusively (0o666 less the umask), locked until the block ends; yield its fd."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o666)
    try:
        _try_lock(fd)
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked_dir(path: Path) -> Iterator[None]:
    """Create the folder `path` (usual permissions, not mkdtemp's 0o700), locked until the block ends."""
    path.mkdir()
    fd = os.open(path, os.O_RDONLY)
    try:
        _try_lock(fd)
        yield
    finally:
        os.close(fd)


def _is_stale(path: Path) -> bool:
    """Whether the staging entry `path` belongs to no live process (its lock can be taken)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return path.is_symlink()  # a link where a staging entry should be: not ours, remove the link only
    try:
        if fcntl is None:  # pragma: no cover - Windows
            return time.time() - os.fstat(fd).st_mtime > _UNLOCKABLE_STALE_AFTER_S
        return _try_lock(fd)
    finally:
        os.close(fd)


def remove_stale(folder: Path, prefix: str = ".") -> list[Path]:
    """Delete the staging entries in `folder` whose name starts with `prefix` left by killed runs."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return removed
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.startswith(".") and name.endswith(_SUFFIXES)):
            continue
        path = Path(entry.path)
        if not _is_stale(path):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        removed.append(path)
    return removed
