"""untar_data: a dataset by name or URL, downloaded once, verified, extracted into a cache keyed by URL."""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.parse
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from lamina._external.archive import ARCHIVE_SUFFIXES, ExtractLimits, archive_suffix, extract_archive
from lamina._external.download import fetch, file_sha256
from lamina._external.registry import get_dataset
from lamina._external.staging import PART, locked_file, remove_stale, staging_name

__all__ = ["TrustOnFirstUseWarning", "cache_dir", "untar_data"]

_READABLE = re.compile(r"[^A-Za-z0-9_.-]+")


class TrustOnFirstUseWarning(UserWarning):
    """An archive with no known sha256 was downloaded and trusted as is; later calls verify against it."""


def cache_dir() -> Path:
    """Root of lamina's download cache: $LAMINA_HOME if set, else the platform's user cache folder.

    Read on every call (never at import) so a test or a job can point it elsewhere; archives go in
    `archives/`, extracted datasets in `data/`. Nothing is created here.
    """
    home = os.environ.get("LAMINA_HOME")
    if home:
        return Path(home).expanduser()
    import platformdirs  # deferred: only needed when LAMINA_HOME is not set

    return Path(platformdirs.user_cache_dir("lamina"))


def _mirrored(url: str, base_url: str | None) -> str:
    """`url` with its scheme and host replaced by `base_url` (which may carry a path prefix), path kept."""
    if not base_url:
        return url
    parts = urllib.parse.urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return base_url.rstrip("/") + path


def _url_key(url: str, filename: str, suffix: str) -> str:
    """A cache folder name for a URL: a readable stem from its file name plus a hash of the whole URL.

    The hash keeps two URLs with the same file name apart; the stem keeps only [A-Za-z0-9_.-] with no
    leading dot, so no name ('..tgz', '.tgz', '%2e%2e.tgz') can be the cache root, a parent or hidden.
    Registry names have no '-', so a URL can never take a registry dataset's folder.
    """
    stem = _READABLE.sub("_", filename[: -len(suffix)]).lstrip(".")[:64] or "archive"
    return f"{stem}-{hashlib.sha256(url.encode()).hexdigest()[:16]}"


def _record_path(archive: Path) -> Path:
    return archive.with_name(archive.name + ".sha256.json")


def _read_record(archive: Path) -> dict[str, object]:
    try:
        data = json.loads(_record_path(archive).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_record(archive: Path, url: str, sha: str) -> None:
    """Remember the sha256 of a downloaded archive that the registry has no checksum for, atomically."""
    record = {"url": url, "sha256": sha, "size": archive.stat().st_size}
    path = _record_path(archive)
    tmp = staging_name(path, PART)
    try:
        with locked_file(tmp) as fd:
            os.write(fd, (json.dumps(record, indent=2) + "\n").encode())
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _cached_archive_ok(archive: Path, sha256: str | None, size: int | None) -> bool:
    """Whether the archive already in the cache matches the known sha256, else its recorded one."""
    if size is not None and archive.stat().st_size != size:
        return False
    recorded = _read_record(archive).get("sha256")
    expected = sha256 or (recorded if isinstance(recorded, str) else None)
    return expected is not None and file_sha256(archive) == expected.lower()


def _dataset_root(folder: Path, archive_root: str | None) -> Path:
    """The folder a user wants: the archive's known root, else its single top-level folder, else `folder`."""
    if archive_root and (folder / archive_root).is_dir():
        return folder / archive_root
    entries = [p for p in folder.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return folder


@dataclass(frozen=True)
class _Source:
    """Where an archive comes from, what it must look like, and its key in the cache."""

    url: str
    key: str
    suffix: str
    sha256: str | None
    size: int | None
    archive_root: str | None


def _resolve(name_or_url: str, base_url: str | None, sha256: str | None) -> _Source:
    """The source of a registry name (through a mirror when one is given) or of an http(s) archive URL."""
    if "://" not in name_or_url:
        info = get_dataset(name_or_url)
        mirror = base_url if base_url is not None else os.environ.get("LAMINA_DATA_MIRROR")
        registry_suffix = archive_suffix(info.url) or ".tgz"
        known = info.sha256 or sha256
        url = _mirrored(info.url, mirror)
        return _Source(url, info.name, registry_suffix, known, info.size_bytes, info.archive_root)
    parts = urllib.parse.urlsplit(name_or_url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(
            f"untar_data: got a {parts.scheme!r} URL {name_or_url!r}; expected http or https.\n"
            "help: for a local archive call extract_archive(path, dest) instead"
        )
    filename = PurePosixPath(urllib.parse.unquote(parts.path)).name
    suffix = archive_suffix(filename)
    if suffix is None:
        raise ValueError(
            f"untar_data: the URL {name_or_url!r} does not end in an archive name; expected one of "
            f"{', '.join(ARCHIVE_SUFFIXES)}.\n"
            "help: to fetch a plain file use download_url(url, dest)"
        )
    return _Source(name_or_url, _url_key(name_or_url, filename, suffix), suffix, sha256, None, None)


def untar_data(
    name_or_url: str,
    dest: Path | None = None,
    force_download: bool = False,
    progress: bool = True,
    base_url: str | None = None,
    *,
    sha256: str | None = None,
    limits: ExtractLimits | None = None,
) -> Path:
    """Download a dataset by registry name (or archive URL) once, extract it, and return its folder.

    The archive is cached in `cache_dir()/archives` and extracted into `dest` (default
    `cache_dir()/data/<name>`, or `data/<file name>-<hash of the URL>` for a URL); when the archive holds a
    single top-level folder, that folder is returned. A second call finds the extracted folder and touches
    no network; `force_download` downloads and extracts again. `base_url` (else $LAMINA_DATA_MIRROR)
    replaces the scheme and host of a registry URL, keeping its path. `sha256` pins a URL's archive; with
    none known, the first download is trusted (a `TrustOnFirstUseWarning`) and later ones checked against it.

    >>> path = untar_data("imagenette_160")  # doctest: +SKIP
    >>> sorted(p.name for p in path.iterdir())  # doctest: +SKIP
    ['noisy_imagenette.csv', 'train', 'val']
    """
    src = _resolve(name_or_url, base_url, sha256.lower() if sha256 else None)
    limits = limits if limits is not None else ExtractLimits()
    root = cache_dir()
    archives, data = root / "archives", root / "data"
    archive = archives / f"{src.key}{src.suffix}"
    target = Path(dest) if dest is not None else data / src.key
    remove_stale(archives)  # .part files and half-extracted folders of killed runs
    remove_stale(target.parent, prefix=f".{target.name}.")

    if not force_download and target.is_dir() and any(target.iterdir()):
        return _dataset_root(target, src.archive_root)

    need_download = force_download or not archive.is_file()
    if not need_download and not _cached_archive_ok(archive, src.sha256, src.size):
        warnings.warn(
            f"untar_data: the cached archive {str(archive)!r} does not match its known or recorded size or "
            "sha256; downloading it again",
            stacklevel=2,
        )
        need_download = True
    if need_download:
        _record_path(archive).unlink(missing_ok=True)
        _, sha = fetch(
            src.url, archive, src.sha256, src.size, progress, timeout=30, max_bytes=limits.max_bytes
        )
        if src.sha256 is None:
            _write_record(archive, src.url, sha)
            warnings.warn(
                f"untar_data: no sha256 is known for {src.url}, so this first download was trusted as is "
                f"(sha256 {sha}, recorded in {str(_record_path(archive))!r}); later calls check against it.\n"
                "help: compare that hash with one the publisher gives, and pass it as untar_data(..., "
                "sha256=...) to pin it",
                TrustOnFirstUseWarning,
                stacklevel=2,
            )

    try:
        extract_archive(archive, target, overwrite=force_download, limits=limits)
    except FileExistsError:
        # another process extracted the same dataset between our check and our rename: use its copy
        if not (target.is_dir() and any(target.iterdir())):
            raise
    return _dataset_root(target, src.archive_root)
