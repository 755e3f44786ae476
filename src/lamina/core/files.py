"""Files written atomically: a reader, or a run killed mid-write, never sees half a file."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_bytes", "remove_stale_temps"]

# every write happens in a private folder `.<target>.lamina-tmp-<pid>-<random>/`, so the temporary files a
# writer makes for itself (safetensors' Rust writer leaves `.tmpXXXXXX` when killed) are cleaned up with it
_TMP_TAG = ".lamina-tmp-"


def _temp_name(path: Path) -> Path:
    return path.parent / f".{path.name}{_TMP_TAG}{os.getpid()}-{secrets.token_hex(6)}"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process writes one file at a time: an earlier temp of ours is a leftover
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process: leave its file alone
    return True


def remove_stale_temps(path: Path) -> list[Path]:
    """Delete the temporary files that writes of `path` left behind when killed (their process is gone)."""
    removed: list[Path] = []
    prefix = f".{path.name}{_TMP_TAG}"
    try:
        candidates = [p for p in path.parent.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return removed
    for p in candidates:
        pid = p.name[len(prefix) :].split("-", 1)[0]
        if pid.isdigit() and _pid_alive(int(pid)):
            continue  # a write in progress in another process
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX: the directory entry is data of the folder)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a directory
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, write: Callable[[str], Any]) -> None:
    """Call `write(tmp_path)`, flush it to disk, then rename it to `path`: readers (and a run interrupted
    by Ctrl-C or a crash) never see half a file, and the previous file stays until the new one is whole.

    `write` writes into a private folder (`.<name>.lamina-tmp-<pid>-<random>/<name>`), so whatever temporary
    files it makes itself go with it. The file gets the usual permissions (0o666 less the umask); the
    folders of earlier writes that were killed are removed first; the parent folder is synced after the
    rename, so the new name survives a power cut too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    while True:  # a fresh private folder for this write
        folder = _temp_name(path)
        try:
            folder.mkdir()
            break
        except FileExistsError:
            continue
    tmp = folder / path.name  # the same name (and suffix) as the target
    try:
        # created with the usual permissions (umask), unlike mkstemp's 0600
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        mode = tmp.stat().st_mode & 0o777  # 0o666 & ~umask, read without changing the process's umask
        write(str(tmp))
        os.chmod(tmp, mode)  # writers that make a new file (safetensors) create it 0600
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    _fsync_dir(path.parent)
