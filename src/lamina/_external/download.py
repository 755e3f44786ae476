"""Verified, atomic, capped downloads over HTTP(S) with a rich progress bar.

Why not pooch: its HTTP downloader (requests) decodes `Content-Encoding: gzip` and has no size cap; a
204 KB response was measured to write a 200 MiB file. Here the body is stored byte for byte as sent and
reading stops past the expected size (or `max_bytes`), so a server cannot fill the disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from http.client import HTTPException
from pathlib import Path
from typing import IO

from lamina._external.staging import PART, locked_file, remove_stale, staging_name

__all__ = ["ChecksumError", "DownloadError", "download_url", "fetch", "file_sha256"]

_CHUNK = 1 << 20  # 1 MiB per read: large enough to be fast, small enough for a smooth progress bar
_USER_AGENT = "lamina (https://pypi.org/project/lamina/)"
_MAX_BYTES = 16 << 30  # the most a download of unknown size may write


class DownloadError(OSError):
    """A download failed (network, HTTP status, or a file of the wrong size); nothing was written at dest."""


class ChecksumError(DownloadError):
    """A downloaded or cached file's sha256 differs from the expected one."""


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) URLs only (urllib alone also follows ftp://)."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: object,
        newurl: str,
    ) -> urllib.request.Request | None:
        if urllib.parse.urlsplit(newurl).scheme not in ("http", "https"):
            raise DownloadError(
                f"download of {req.full_url} was redirected to {newurl!r}; expected an http(s) URL.\n"
                "help: download it by hand if you trust that location"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)  # type: ignore[arg-type]


@contextlib.contextmanager
def _progress_bar(label: str, total: int | None, enabled: bool) -> Iterator[Callable[[int], None]]:
    """Yield an `advance(nbytes)` callback: a rich progress bar when enabled, else a no-op."""
    if not enabled:
        yield lambda n: None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def _fmt_bytes(n: int) -> str:
    return f"{n:,} bytes"


def _open(url: str, timeout: float) -> IO[bytes]:
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    opener = urllib.request.build_opener(_HttpOnlyRedirects())
    try:
        response: IO[bytes] = opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        raise DownloadError(
            f"download of {url} failed: the server answered HTTP {e.code} {e.reason}, expected 200.\n"
            "help: check that the URL is right and reachable from this machine (try it in a browser)"
        ) from e
    except (urllib.error.URLError, OSError, HTTPException) as e:
        if isinstance(e, DownloadError):
            raise
        raise DownloadError(
            f"download of {url} failed before any data arrived: {getattr(e, 'reason', e)}.\n"
            "help: check your connection (or a mirror via LAMINA_DATA_MIRROR) and call again; "
            f"{url} must be reachable from this machine"
        ) from e
    return response


def _stream(
    url: str, response: IO[bytes], out: IO[bytes], size: int | None, max_bytes: int, progress: bool
) -> tuple[int, str]:
    """Copy the body to `out`, refusing more bytes than announced or expected; return (bytes, sha256)."""
    retry = f"help: check your connection (or a mirror via LAMINA_DATA_MIRROR) and call again; {url} "
    headers = getattr(response, "headers", None)
    header = headers.get("Content-Length") if headers is not None else None
    announced = int(header) if header and header.strip().isdigit() else None
    if announced is not None and size is not None and announced != size:
        raise DownloadError(
            f"download of {url}: the server announces {_fmt_bytes(announced)}, expected "
            f"{_fmt_bytes(size)}.\nhelp: the file at that URL changed or a proxy rewrote it; "
            "check the URL, or download it by hand and pass the right size"
        )
    limit = min(x for x in (size, announced, max_bytes) if x is not None)
    total = announced if announced is not None else size
    digest = hashlib.sha256()
    got = 0
    show = progress and sys.stdout is not None and sys.stdout.isatty()
    # read1: whatever has arrived (up to 1 MiB), so a slow server still moves the bar and the .part file
    read = getattr(response, "read1", response.read)
    with _progress_bar(Path(urllib.parse.urlsplit(url).path).name, total, show) as advance:
        while True:
            try:
                chunk = read(min(_CHUNK, limit + 1 - got))
            except (OSError, HTTPException) as e:
                raise DownloadError(
                    f"download of {url} broke off after {_fmt_bytes(got)}"
                    + (f" of {_fmt_bytes(total)}" if total is not None else "")
                    + f": {e!r}.\n{retry}will be downloaded again from the start"
                ) from e
            if not chunk:
                break
            got += len(chunk)
            if got > limit:
                raise DownloadError(
                    f"download of {url} sends more than {_fmt_bytes(limit)}; stopped there.\n"
                    f"{retry}must serve the expected file (raise max_bytes for a larger one)"
                )
            out.write(chunk)
            digest.update(chunk)
            advance(len(chunk))
    if announced is not None and got != announced:
        raise DownloadError(
            f"download of {url} is truncated: got {_fmt_bytes(got)}, the server announced "
            f"{_fmt_bytes(announced)}.\n{retry}will be downloaded again from the start"
        )
    if size is not None and got != size:
        raise DownloadError(
            f"download of {url} has the wrong size: got {_fmt_bytes(got)}, expected {_fmt_bytes(size)}.\n"
            f"{retry}will be downloaded again; if it keeps failing, the file at that URL changed"
        )
    return got, digest.hexdigest()


def fetch(
    url: str,
    dest: Path,
    sha256: str | None,
    size: int | None,
    progress: bool,
    timeout: float,
    max_bytes: int = _MAX_BYTES,
) -> tuple[Path, str]:
    """Download `url` to `dest` atomically and return (dest, the sha256 of what was written)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(dest.parent, prefix=f".{dest.name}.")
    tmp = staging_name(dest, PART)
    try:
        with locked_file(tmp) as fd:
            with os.fdopen(os.dup(fd), "wb") as out, _open(url, timeout) as response:
                _, actual = _stream(url, response, out, size, max_bytes, progress)
                out.flush()
                os.fsync(out.fileno())
            if sha256 is not None and actual != sha256.lower():
                raise ChecksumError(
                    f"download of {url} has sha256 {actual}, expected {sha256.lower()}.\n"
                    "help: the download was corrupted or the file at that URL changed; call again, and if it "
                    "fails the same way, check the URL and the expected checksum"
                )
            os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest, actual


def download_url(
    url: str,
    dest: Path,
    sha256: str | None = None,
    size: int | None = None,
    progress: bool = True,
    timeout: float = 30,
) -> Path:
    """Download `url` to `dest`, verified and atomic: `dest` appears only once the size and sha256 check out.

    The data streams into a locked temporary file beside `dest` (so the final rename never crosses file
    systems); a truncated body, a size other than `size` or a sha256 other than `sha256` raises
    `DownloadError` and removes it (a killed run's is removed by the next call). At most `size` bytes (16 GiB
    when unknown) are read. A progress bar shows when `progress` is on and stdout is a terminal.

    >>> download_url("https://files.grouplens.org/datasets/movielens/ml-100k.zip",
    ...              Path("ml-100k.zip"))  # doctest: +SKIP
    """
    return fetch(url, Path(dest), sha256, size, progress, timeout)[0]


def file_sha256(path: Path) -> str:
    """The sha256 of the file at `path`, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
