"""Safe, atomic extraction of tar and zip archives: lamina writes every member itself.

Why not `tarfile`'s `filter="data"`: the Python this project supports and tests on (3.11.7) has a data
filter that can be bypassed (the CVE-2025-4517 family: member paths long enough that its realpath check
gives up, with a hard link aliasing a symlink), and the floor cannot be raised to a fixed release. So no
member is handed to `tarfile.extract*` or `zipfile.extract*`: names are checked lexically, only regular
files and folders are created (links, devices and FIFOs are refused), every file is opened with O_EXCL
inside a fresh folder that holds nothing else, and bytes are counted as they stream, against caps.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tarfile
import unicodedata
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from lamina._external.staging import EXTRACTING, OLD, locked_dir, remove_stale, staging_name

__all__ = [
    "ARCHIVE_SUFFIXES",
    "ExtractLimits",
    "UnsafeArchiveError",
    "archive_suffix",
    "extract_archive",
]

TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tbz2", ".tbz", ".tar.xz", ".txz")
ZIP_SUFFIXES = (".zip",)
ARCHIVE_SUFFIXES = TAR_SUFFIXES + ZIP_SUFFIXES
_CHUNK = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")
# a new file only: never an existing one, never through a symlink
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)


class UnsafeArchiveError(ValueError):
    """An archive member that could write outside the destination, a link or special file, or too big."""


@dataclass(frozen=True)
class ExtractLimits:
    """Caps on what one archive may extract; bytes are counted as they are written, not read from headers.

    The defaults fit every dataset in the registry with room to spare; raise them for larger archives.
    """

    max_bytes: int = 16 << 30  # 16 GiB in all
    max_file_bytes: int = 16 << 30  # in one member
    max_members: int = 1_000_000


def archive_suffix(filename: str) -> str | None:
    """The archive suffix `filename` ends with (lower case, e.g. '.tar.gz'), or None."""
    lower = filename.lower()
    return next((s for s in ARCHIVE_SUFFIXES if lower.endswith(s)), None)


def _refuse(archive: Path, member: str, why: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        f"extract_archive: refusing to extract {str(archive)!r}: member {member!r} {why}; "
        "nothing was extracted.\n"
        "help: only extract archives from sources you trust; if this one should be safe, unpack it by hand "
        "and inspect that member"
    )


def _parts(archive: Path, name: str) -> tuple[str, ...]:
    """The path components of member `name`, or UnsafeArchiveError when it could leave the destination."""
    if "\x00" in name:
        raise _refuse(archive, name, "has a NUL character in its name")
    if "\\" in name:
        raise _refuse(archive, name, "has a backslash in its name (a path separator on Windows)")
    if name.startswith("/") or _DRIVE.match(name):
        raise _refuse(archive, name, "has an absolute path")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise _refuse(archive, name, "leaves the destination folder ('..')")
    return parts


def _key(parts: tuple[str, ...]) -> tuple[str, ...]:
    """What a path is on a case-insensitive, Unicode-normalising file system (macOS, Windows)."""
    return tuple(unicodedata.normalize("NFC", p).casefold() for p in parts)


class _Plan:
    """The members seen so far: refuses duplicates, file/folder clashes and too many members."""

    def __init__(self, archive: Path, limits: ExtractLimits) -> None:
        self.archive, self.limits = archive, limits
        self.kinds: dict[tuple[str, ...], str] = {}
        self.count = 0
        self.written = 0

    def add(self, name: str, is_dir: bool) -> tuple[str, ...]:
        self.count += 1
        if self.count > self.limits.max_members:
            raise _refuse(
                self.archive, name, f"is past the limit of {self.limits.max_members:,} members (max_members)"
            )
        parts = _parts(self.archive, name)
        if not parts:
            if is_dir:
                return parts  # './': the destination itself
            raise _refuse(self.archive, name, "has an empty name")
        key = _key(parts)
        for i in range(1, len(key)):
            if self.kinds.setdefault(key[:i], "dir") != "dir":
                raise _refuse(self.archive, name, f"is inside {'/'.join(parts[:i])!r}, which is a file")
        seen = self.kinds.get(key)
        if seen is not None and not (is_dir and seen == "dir"):
            raise _refuse(self.archive, name, "names the same path as an earlier member (a duplicate)")
        self.kinds[key] = "dir" if is_dir else "file"
        return parts

    def write(self, into: Path, parts: tuple[str, ...], name: str, source: IO[bytes]) -> None:
        """Stream `source` into a new file at `parts` under `into`, counting bytes against the caps."""
        path = into.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        size = 0
        with os.fdopen(os.open(path, _NEW_FILE, 0o666), "wb") as out:
            while chunk := source.read(_CHUNK):
                size += len(chunk)
                self.written += len(chunk)
                if size > self.limits.max_file_bytes:
                    raise _refuse(
                        self.archive, name, f"expands past max_file_bytes={self.limits.max_file_bytes:,}"
                    )
                if self.written > self.limits.max_bytes:
                    raise _refuse(
                        self.archive, name, f"takes the archive past max_bytes={self.limits.max_bytes:,}"
                    )
                out.write(chunk)


def _tar_members(tf: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while (member := tf.next()) is not None:
        yield member


def _extract_tar(archive: Path, into: Path, limits: ExtractLimits) -> None:
    plan = _Plan(archive, limits)
    with tarfile.open(archive, "r:*") as tf:
        for m in _tar_members(tf):  # one pass: each member is checked, then written, as it is read
            if m.isdir():
                parts = plan.add(m.name, is_dir=True)
                into.joinpath(*parts).mkdir(parents=True, exist_ok=True)
                continue
            if m.issym() or m.islnk():
                kind = "symbolic" if m.issym() else "hard"
                raise _refuse(archive, m.name, f"is a {kind} link to {m.linkname!r}; links are refused")
            if m.ischr() or m.isblk():
                raise _refuse(archive, m.name, "is a device file")
            if m.isfifo():
                raise _refuse(archive, m.name, "is a named pipe (FIFO)")
            if not m.isreg():
                raise _refuse(archive, m.name, f"has an unsupported tar type {m.type!r}")
            if m.size > limits.max_file_bytes:
                raise _refuse(archive, m.name, f"declares {m.size:,} bytes, past max_file_bytes")
            parts = plan.add(m.name, is_dir=False)
            source = tf.extractfile(m)
            if source is None:  # pragma: no cover - isreg() members always have a file object
                raise _refuse(archive, m.name, "has no readable content")
            with source:
                plan.write(into, parts, m.name, source)


def _extract_zip(archive: Path, into: Path, limits: ExtractLimits) -> None:
    plan = _Plan(archive, limits)
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        if len(infos) > limits.max_members:
            raise _refuse(
                archive, infos[limits.max_members].filename, f"is past {limits.max_members:,} members"
            )
        declared = sum(i.file_size for i in infos)
        if declared > limits.max_bytes:
            raise _refuse(archive, infos[-1].filename, f"makes it declare {declared:,} bytes, past max_bytes")
        planned = []
        for info in infos:  # the whole central directory is checked before anything is written
            kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the zip records no unix file type
            if kind == stat.S_IFLNK:
                raise _refuse(archive, info.filename, "is a symbolic link; links are not extracted")
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise _refuse(archive, info.filename, "is a device or other special file")
            if info.flag_bits & 0x1:
                raise _refuse(archive, info.filename, "is encrypted")
            is_dir = info.is_dir() or kind == stat.S_IFDIR
            planned.append((info, is_dir, plan.add(info.filename, is_dir)))
        for info, is_dir, parts in planned:
            if is_dir:
                into.joinpath(*parts).mkdir(parents=True, exist_ok=True)
                continue
            with zf.open(info) as source:
                plan.write(into, parts, info.filename, source)


def _archive_kind(archive: Path) -> str:
    """'tar' or 'zip', from the file name, else from the file's content."""
    suffix = archive_suffix(archive.name)
    if suffix is not None:
        return "zip" if suffix in ZIP_SUFFIXES else "tar"
    if zipfile.is_zipfile(archive):
        return "zip"
    if tarfile.is_tarfile(archive):
        return "tar"
    raise ValueError(
        f"extract_archive: {str(archive)!r} is neither a tar nor a zip archive; expected one of "
        f"{', '.join(ARCHIVE_SUFFIXES)}.\n"
        "help: check that the file is really an archive (an HTML error page saved as .tgz is a common cause)"
    )


def _publish(tmp: Path, dest: Path, archive: Path) -> None:
    """Rename the finished folder `tmp` to `dest`, swapping out an existing `dest` only now."""
    if dest.exists() or dest.is_symlink():
        old = staging_name(dest, OLD)
        os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
        return
    try:
        os.replace(tmp, dest)
    except OSError as e:
        if not dest.exists():
            raise
        raise FileExistsError(
            f"extract_archive: {str(dest)!r} appeared while {archive.name} was being extracted.\n"
            "help: another process is extracting the same archive; use its result or call again"
        ) from e


def extract_archive(
    archive: Path, dest: Path, *, overwrite: bool = False, limits: ExtractLimits | None = None
) -> Path:
    """Extract a tar or zip `archive` into `dest`, safely (nothing lands outside `dest`) and atomically.

    Only regular files and folders are extracted: links, devices, absolute or `..` names, duplicate names
    and archives past `limits` (16 GiB by default) raise `UnsafeArchiveError`. Members go into a fresh
    hidden sibling of `dest` that is renamed to `dest` only when all succeeded, so a failure leaves nothing
    behind (a killed run's folder is removed by the next call). An existing non-empty `dest` raises
    `FileExistsError` unless `overwrite`, which swaps it out only after the new extraction succeeded.
    """
    archive, dest = Path(archive), Path(dest)
    limits = limits if limits is not None else ExtractLimits()
    if not archive.is_file():
        raise FileNotFoundError(
            f"extract_archive: no archive at {str(archive)!r}.\nhelp: check the path, or download it first"
        )
    if dest.name in ("", ".", ".."):
        raise ValueError(
            f"extract_archive: dest {str(dest)!r} does not name a folder of its own.\n"
            "help: pass the path of a new folder to extract into, e.g. Path('data/mnist')"
        )
    kind = _archive_kind(archive)
    if dest.exists() and not overwrite and (not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(
            f"extract_archive: {str(dest)!r} already exists; expected a new folder to extract "
            f"{archive.name} into.\n"
            "help: remove it, choose another dest, or pass overwrite=True"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(dest.parent, prefix=f".{dest.name}.")
    tmp = staging_name(dest, EXTRACTING)
    try:
        with locked_dir(tmp):
            try:
                (_extract_tar if kind == "tar" else _extract_zip)(archive, tmp, limits)
            except (tarfile.TarError, zipfile.BadZipFile, EOFError, RuntimeError, NotImplementedError) as e:
                raise ValueError(
                    f"extract_archive: {str(archive)!r} is corrupt or truncated "
                    f"(or uses an unsupported feature: {e}); "
                    "nothing was extracted.\n"
                    "help: delete the archive and download it again (untar_data(..., force_download=True))"
                ) from e
            _publish(tmp, dest, archive)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
