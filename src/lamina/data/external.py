"""Public datasets by name: a registry of URLs, a verified atomic download and a safe extract into a cache.

`untar_data("imagenette_160")` downloads the archive once into `cache_dir()/archives`, checks its size and
sha256, extracts it into `cache_dir()/data/imagenette_160` and returns the dataset folder; later calls
touch no network. Nothing half-written is ever left where a later call would mistake it for a good copy:
downloads land in a temporary file that is renamed into place only after the checks pass, and archives are
extracted into a temporary sibling folder that is renamed into place only when every member was extracted.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import os
import secrets
import shutil
import stat
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path, PurePosixPath
from types import MappingProxyType

__all__ = [
    "DATASETS",
    "ChecksumError",
    "DatasetInfo",
    "DownloadError",
    "UnknownDatasetError",
    "UnsafeArchiveError",
    "cache_dir",
    "download_url",
    "extract_archive",
    "get_dataset",
    "list_datasets",
    "untar_data",
]

_CHUNK = 1 << 20  # 1 MiB per read: large enough to be fast, small enough for a smooth progress bar
_USER_AGENT = "lamina (https://pypi.org/project/lamina/)"
_TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tbz2", ".tbz", ".tar.xz", ".txz")
_ZIP_SUFFIXES = (".zip",)


# ----------------------------------------------------------------------------------------------- errors


class DownloadError(OSError):
    """A download failed (network, HTTP status, or a file of the wrong size); nothing was written at dest."""


class ChecksumError(DownloadError):
    """A downloaded or cached file's sha256 differs from the expected one."""


class UnsafeArchiveError(ValueError):
    """An archive member would land outside the destination folder, or is a device or other special file."""


class UnknownDatasetError(KeyError):
    """A dataset name that is not in the registry; the message lists close matches."""

    def __str__(self) -> str:
        # KeyError's str() is the repr of its argument, which would show the message quoted with literal \n
        return str(self.args[0]) if self.args else ""


# --------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class DatasetInfo:
    """One public dataset: where its archive lives and what the downloaded archive must look like.

    `size_bytes` and `sha256` are checked after the download when known; `archive_root` is the folder the
    archive extracts to (the one `untar_data` returns).
    """

    name: str
    url: str
    size_bytes: int | None
    sha256: str | None
    description: str
    archive_root: str | None


_FASTAI_S3 = "https://s3.amazonaws.com/fast-ai-"

# Sizes are the ones fast.ai records for these archives (fastai/data/download_checks.py). fast.ai publishes
# md5 hashes, not sha256, and no sha256 is published for the other archives either, so every sha256 is None:
# the first download records the sha256 it computed beside the archive and later calls verify against it.
_ENTRIES = (
    DatasetInfo(
        "imagenette",
        f"{_FASTAI_S3}imageclas/imagenette2.tgz",
        1557161267,
        None,
        "Imagenette (full size): 10 easy ImageNet classes, ~13k images, train/val folders",
        "imagenette2",
    ),
    DatasetInfo(
        "imagenette_320",
        f"{_FASTAI_S3}imageclas/imagenette2-320.tgz",
        341663724,
        None,
        "Imagenette, shortest side resized to 320 px",
        "imagenette2-320",
    ),
    DatasetInfo(
        "imagenette_160",
        f"{_FASTAI_S3}imageclas/imagenette2-160.tgz",
        99003388,
        None,
        "Imagenette, shortest side resized to 160 px: the quickest real image benchmark",
        "imagenette2-160",
    ),
    DatasetInfo(
        "imagewoof",
        f"{_FASTAI_S3}imageclas/imagewoof2.tgz",
        1343715595,
        None,
        "Imagewoof (full size): 10 hard-to-tell dog breeds from ImageNet, train/val folders",
        "imagewoof2",
    ),
    DatasetInfo(
        "imagewoof_320",
        f"{_FASTAI_S3}imageclas/imagewoof2-320.tgz",
        328387740,
        None,
        "Imagewoof, shortest side resized to 320 px",
        "imagewoof2-320",
    ),
    DatasetInfo(
        "imagewoof_160",
        f"{_FASTAI_S3}imageclas/imagewoof2-160.tgz",
        92612825,
        None,
        "Imagewoof, shortest side resized to 160 px",
        "imagewoof2-160",
    ),
    DatasetInfo(
        "pets",
        f"{_FASTAI_S3}imageclas/oxford-iiit-pet.tgz",
        811706944,
        None,
        "Oxford-IIIT Pets: 37 cat and dog breeds, ~7.4k images, breed in the file name, plus masks",
        "oxford-iiit-pet",
    ),
    DatasetInfo(
        "mnist",
        f"{_FASTAI_S3}imageclas/mnist_png.tgz",
        15683414,
        None,
        "MNIST as png files: 70k handwritten digits in training/testing/<digit> folders",
        "mnist_png",
    ),
    DatasetInfo(
        "mnist_sample",
        f"{_FASTAI_S3}sample/mnist_sample.tgz",
        3214948,
        None,
        "MNIST sample: only the digits 3 and 7, train/valid folders and a labels.csv",
        "mnist_sample",
    ),
    DatasetInfo(
        "cifar10",
        f"{_FASTAI_S3}sample/cifar10.tgz",
        168168549,
        None,
        "CIFAR-10 as png files: 60k 32x32 images in 10 classes, train/test folders",
        "cifar10",
    ),
    DatasetInfo(
        "cifar100",
        f"{_FASTAI_S3}imageclas/cifar100.tgz",
        169168619,
        None,
        "CIFAR-100 as png files: 60k 32x32 images in 100 classes",
        "cifar100",
    ),
    DatasetInfo(
        "camvid_tiny",
        f"{_FASTAI_S3}sample/camvid_tiny.tgz",
        2314212,
        None,
        "CamVid tiny: 100 street scenes with segmentation masks, for quick segmentation tests",
        "camvid_tiny",
    ),
    DatasetInfo(
        "camvid",
        f"{_FASTAI_S3}imagelocal/camvid.tgz",
        598913237,
        None,
        "CamVid: 701 street scenes with per-pixel labels in 32 classes",
        "camvid",
    ),
    DatasetInfo(
        "adult",
        f"{_FASTAI_S3}sample/adult_sample.tgz",
        968212,
        None,
        "Adult census income (UCI): 32,561 rows in one adult.csv, predict salary >= 50k",
        "adult_sample",
    ),
    DatasetInfo(
        "movielens_100k",
        "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        None,
        None,
        "MovieLens 100k: 100,000 ratings from 943 users on 1,682 movies (u.data, u.item, ...)",
        "ml-100k",
    ),
    DatasetInfo(
        "imdb",
        f"{_FASTAI_S3}nlp/imdb.tgz",
        144440600,
        None,
        "IMDb movie reviews: 50k labelled (pos/neg) in train/test plus 50k unlabelled",
        "imdb",
    ),
)

DATASETS: Mapping[str, DatasetInfo] = MappingProxyType({d.name: d for d in _ENTRIES})


def list_datasets() -> list[str]:
    """Names of the datasets `untar_data` knows, sorted, so a user can pick one without reading the source."""
    return sorted(DATASETS)


def get_dataset(name: str) -> DatasetInfo:
    """Registry entry for `name`; an unknown name raises an error that suggests the closest known names."""
    try:
        return DATASETS[name]
    except KeyError:
        pass
    close = difflib.get_close_matches(name.lower(), list(DATASETS), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownDatasetError(
        f"unknown dataset {name!r}.{hint} Known datasets: {', '.join(list_datasets())}.\n"
        "help: pick a name from lamina.data.external.list_datasets(), or pass the archive's full URL "
        "(https://...) to untar_data"
    )


# ---------------------------------------------------------------------------------------------- cache


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


# ------------------------------------------------------------------------------------------- download


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


def _fetch(
    url: str, dest: Path, sha256: str | None, size: int | None, progress: bool, timeout: float
) -> tuple[Path, str]:
    """Download `url` to `dest` atomically and return (dest, the sha256 of what was written)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    expected_sha = sha256.lower() if sha256 else None
    # os.open with 0o666 (not mkstemp's 0o600) so the archive gets the user's usual permissions
    tmp = dest.parent / f".{dest.name}.{secrets.token_hex(6)}.part"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    retry = f"help: check your connection (or a mirror via LAMINA_DATA_MIRROR) and call again; {url} "
    try:
        digest = hashlib.sha256()
        got = 0
        with os.fdopen(fd, "wb") as out:
            request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
            try:
                response = urllib.request.urlopen(request, timeout=timeout)
            except urllib.error.HTTPError as e:
                raise DownloadError(
                    f"download of {url} failed: the server answered HTTP {e.code} {e.reason}, expected 200.\n"
                    "help: check that the URL is right and reachable from this machine (try it in a browser)"
                ) from e
            except (urllib.error.URLError, OSError, HTTPException) as e:
                reason = getattr(e, "reason", e)
                raise DownloadError(
                    f"download of {url} failed before any data arrived: {reason}.\n"
                    f"{retry}must be reachable from this machine"
                ) from e
            with response:
                header = response.headers.get("Content-Length")
                announced = int(header) if header and header.strip().isdigit() else None
                if announced is not None and size is not None and announced != size:
                    raise DownloadError(
                        f"download of {url}: the server announces {_fmt_bytes(announced)}, expected "
                        f"{_fmt_bytes(size)}.\nhelp: the file at that URL changed or a proxy rewrote it; "
                        "check the URL, or download it by hand and pass the right size"
                    )
                total = announced if announced is not None else size
                show = progress and sys.stdout is not None and sys.stdout.isatty()
                with _progress_bar(dest.name, total, show) as advance:
                    while True:
                        try:
                            chunk = response.read(_CHUNK)
                        except (OSError, HTTPException) as e:
                            raise DownloadError(
                                f"download of {url} broke off after {_fmt_bytes(got)}"
                                + (f" of {_fmt_bytes(total)}" if total is not None else "")
                                + f": {e!r}.\n{retry}will be downloaded again from the start"
                            ) from e
                        if not chunk:
                            break
                        out.write(chunk)
                        digest.update(chunk)
                        got += len(chunk)
                        advance(len(chunk))
            out.flush()
            os.fsync(out.fileno())
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
        actual_sha = digest.hexdigest()
        if expected_sha is not None and actual_sha != expected_sha:
            raise ChecksumError(
                f"download of {url} has sha256 {actual_sha}, expected {expected_sha}.\n"
                "help: the download was corrupted or the file at that URL changed; call again, and if it "
                "fails the same way, check the URL and the expected checksum"
            )
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest, actual_sha


def download_url(
    url: str,
    dest: Path,
    sha256: str | None = None,
    size: int | None = None,
    progress: bool = True,
    timeout: float = 30,
) -> Path:
    """Download `url` to `dest`, verified and atomic: `dest` appears only once the size and sha256 check out.

    The data streams into a temporary file beside `dest` (so the final rename never crosses file systems);
    a truncated body, a size other than `size` or a sha256 other than `sha256` raises `DownloadError` and
    removes the temporary file. A progress bar shows when `progress` is on and stdout is a terminal.

    >>> download_url("https://files.grouplens.org/datasets/movielens/ml-100k.zip",
    ...              Path("ml-100k.zip"))  # doctest: +SKIP
    """
    return _fetch(url, Path(dest), sha256, size, progress, timeout)[0]


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


# -------------------------------------------------------------------------------------------- extract


def _archive_kind(archive: Path) -> str:
    """'tar' or 'zip', from the file name, else from the file's content."""
    name = archive.name.lower()
    if name.endswith(_ZIP_SUFFIXES):
        return "zip"
    if name.endswith(_TAR_SUFFIXES):
        return "tar"
    if zipfile.is_zipfile(archive):
        return "zip"
    if tarfile.is_tarfile(archive):
        return "tar"
    raise ValueError(
        f"extract_archive: {str(archive)!r} is neither a tar nor a zip archive; expected one of "
        f"{', '.join(_TAR_SUFFIXES + _ZIP_SUFFIXES)}.\n"
        "help: check that the file is really an archive (an HTML error page saved as .tgz is a common cause)"
    )


def _refuse(archive: Path, member: str, why: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        f"extract_archive: refusing to extract {str(archive)!r}: member {member!r} {why}; "
        "nothing was extracted.\n"
        "help: only extract archives from sources you trust; if this one should be safe, unpack it by hand "
        "and inspect that member"
    )


def _is_absolute(name: str) -> bool:
    """True for '/x', '\\x' and Windows drive paths 'C:x', which all escape a join on some platform."""
    return name.startswith(("/", "\\")) or (len(name) > 1 and name[0].isalpha() and name[1] == ":")


def _inside(rel: str) -> bool:
    """True when the relative posix path `rel`, read lexically, never climbs above its folder."""
    depth = 0
    for part in rel.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return False
        elif part not in ("", "."):
            depth += 1
    return True


def _check_tar(archive: Path, members: list[tarfile.TarInfo]) -> None:
    """Raise UnsafeArchiveError for the first member that could write outside the destination."""
    links = {os.path.normpath(m.name.replace("\\", "/")) for m in members if m.issym()}
    for m in members:
        name = m.name.replace("\\", "/")
        if _is_absolute(name):
            raise _refuse(archive, m.name, "has an absolute path")
        if not _inside(name):
            raise _refuse(archive, m.name, "leaves the destination folder ('..')")
        parents = PurePosixPath(os.path.normpath(name)).parents
        via = next((str(p) for p in parents if str(p) in links), None)
        if via is not None:
            raise _refuse(archive, m.name, f"is written through the symlink {via!r} in the same archive")
        if m.issym():
            target = m.linkname.replace("\\", "/")
            if _is_absolute(target) or not _inside(str(PurePosixPath(name).parent / target)):
                raise _refuse(archive, m.name, f"is a symlink to {m.linkname!r}, outside the destination")
        elif m.islnk():
            target = m.linkname.replace("\\", "/")
            if _is_absolute(target) or not _inside(target):
                raise _refuse(archive, m.name, f"is a hard link to {m.linkname!r}, outside the destination")
        elif m.ischr() or m.isblk():
            raise _refuse(archive, m.name, "is a device file")
        elif m.isfifo():
            raise _refuse(archive, m.name, "is a named pipe (FIFO)")
        elif not (m.isfile() or m.isdir()):
            raise _refuse(archive, m.name, f"has an unsupported tar type {m.type!r}")


def _check_zip(archive: Path, infos: list[zipfile.ZipInfo]) -> None:
    """Raise UnsafeArchiveError for the first zip entry whose path leaves the destination or is special."""
    for info in infos:
        name = info.filename.replace("\\", "/")
        if _is_absolute(name):
            raise _refuse(archive, info.filename, "has an absolute path")
        if not _inside(name):
            raise _refuse(archive, info.filename, "leaves the destination folder ('..')")
        kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the zip records no unix file type
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK):
            raise _refuse(archive, info.filename, "is a device or other special file")
        # zipfile writes a symlink entry as a small regular file holding the target: harmless


def _extract_tar(archive: Path, into: Path) -> None:
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        _check_tar(archive, members)
        if not hasattr(tarfile, "data_filter"):  # Python < 3.11.4: our own checks above are the only guard
            tf.extractall(into, members=members)
            return
        try:
            tf.extractall(into, members=members, filter="data")
        except tarfile.FilterError as e:  # our checks should have caught it first: report it the same way
            name = e.tarinfo.name if e.tarinfo is not None else "?"
            raise _refuse(archive, name, f"was refused by tarfile's data filter ({e})") from e


def _extract_zip(archive: Path, into: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        _check_zip(archive, infos)
        zf.extractall(into, members=infos)


def extract_archive(archive: Path, dest: Path, *, overwrite: bool = False) -> Path:
    """Extract a tar or zip `archive` into `dest`, safely (nothing lands outside `dest`) and atomically.

    Formats: .tgz, .tar.gz, .tar, .tar.bz2, .tar.xz and .zip (else sniffed from the content).

    Every member is checked before anything is written: absolute paths, `..`, links whose target leaves
    `dest`, and device files are refused with `UnsafeArchiveError`. Members are extracted into a temporary
    sibling of `dest` that is renamed to `dest` only when all succeeded, so a failure leaves nothing behind.
    An existing non-empty `dest` raises `FileExistsError` unless `overwrite`, which swaps it out only after
    the new extraction succeeded.
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise FileNotFoundError(
            f"extract_archive: no archive at {str(archive)!r}.\nhelp: check the path, or download it first"
        )
    kind = _archive_kind(archive)
    if dest.exists() and not overwrite and (not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(
            f"extract_archive: {str(dest)!r} already exists; expected a new folder to extract "
            f"{archive.name} into.\n"
            "help: remove it, choose another dest, or pass overwrite=True"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    # mkdir (not mkdtemp) so the folder gets the user's usual permissions, not 0o700
    tmp = dest.parent / f".{dest.name}.{secrets.token_hex(6)}.extracting"
    tmp.mkdir()
    try:
        try:
            if kind == "tar":
                _extract_tar(archive, tmp)
            else:
                _extract_zip(archive, tmp)
        except (tarfile.TarError, zipfile.BadZipFile, EOFError) as e:
            raise ValueError(
                f"extract_archive: {str(archive)!r} is corrupt or truncated ({e}); nothing was extracted.\n"
                "help: delete the archive and download it again (untar_data(..., force_download=True))"
            ) from e
        if dest.exists():
            old = dest.parent / f".{dest.name}.{secrets.token_hex(6)}.old"
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.replace(tmp, dest)
            except OSError as e:
                if not dest.exists():
                    raise
                raise FileExistsError(
                    f"extract_archive: {str(dest)!r} appeared while {archive.name} was being extracted.\n"
                    "help: another process is extracting the same archive; use its result or call again"
                ) from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


# ----------------------------------------------------------------------------------------- untar_data


def _mirrored(url: str, base_url: str | None) -> str:
    """`url` with its scheme and host replaced by `base_url` (which may carry a path prefix), path kept."""
    if not base_url:
        return url
    parts = urllib.parse.urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return base_url.rstrip("/") + path


def _strip_archive_suffix(filename: str) -> str | None:
    lower = filename.lower()
    for suffix in _TAR_SUFFIXES + _ZIP_SUFFIXES:
        if lower.endswith(suffix) and len(filename) > len(suffix):
            return filename[: -len(suffix)]
    return None


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
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)


def _cached_archive_ok(archive: Path, sha256: str | None, size: int | None, url: str) -> bool:
    """Whether the archive already in the cache matches what we expect (recording a checksum if none)."""
    if size is not None and archive.stat().st_size != size:
        return False
    record = _read_record(archive)
    expected = sha256 or (record.get("sha256") if isinstance(record.get("sha256"), str) else None)
    actual = _file_sha256(archive)
    if expected is None:
        _write_record(archive, url, actual)
        return True
    return actual == str(expected).lower()


def _dataset_root(folder: Path, archive_root: str | None) -> Path:
    """The folder a user wants: the archive's known root, else its single top-level folder, else `folder`."""
    if archive_root and (folder / archive_root).is_dir():
        return folder / archive_root
    entries = [p for p in folder.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return folder


def untar_data(
    name_or_url: str,
    dest: Path | None = None,
    force_download: bool = False,
    progress: bool = True,
    base_url: str | None = None,
) -> Path:
    """Download a dataset by registry name (or archive URL) once, extract it, and return its folder.

    The archive is cached in `cache_dir()/archives` and extracted into `dest` (default
    `cache_dir()/data/<name>`); when the archive holds a single top-level folder, that folder is returned.
    A second call finds the extracted folder and touches no network; `force_download` downloads and
    extracts again. `base_url` (else $LAMINA_DATA_MIRROR) replaces the scheme and host of a registry URL,
    keeping its path, to fetch from a mirror; it does not apply to a URL passed directly.

    >>> path = untar_data("imagenette_160")  # doctest: +SKIP
    >>> sorted(p.name for p in path.iterdir())  # doctest: +SKIP
    ['noisy_imagenette.csv', 'train', 'val']
    """
    if "://" in name_or_url:
        parts = urllib.parse.urlsplit(name_or_url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(
                f"untar_data: got a {parts.scheme!r} URL {name_or_url!r}; expected http or https.\n"
                "help: for a local archive call extract_archive(path, dest) instead"
            )
        filename = PurePosixPath(urllib.parse.unquote(parts.path)).name
        name = _strip_archive_suffix(filename)
        if name is None:
            raise ValueError(
                f"untar_data: the URL {name_or_url!r} does not end in an archive name; expected one of "
                f"{', '.join(_TAR_SUFFIXES + _ZIP_SUFFIXES)}.\n"
                "help: to fetch a plain file use download_url(url, dest)"
            )
        url, sha256, size, archive_root = name_or_url, None, None, None
    else:
        info = get_dataset(name_or_url)
        name = info.name
        mirror = base_url if base_url is not None else os.environ.get("LAMINA_DATA_MIRROR")
        url = _mirrored(info.url, mirror)
        filename = PurePosixPath(urllib.parse.urlsplit(info.url).path).name
        sha256, size, archive_root = info.sha256, info.size_bytes, info.archive_root

    root = cache_dir()
    archive = root / "archives" / filename
    target = Path(dest) if dest is not None else root / "data" / name

    if not force_download and target.is_dir() and any(target.iterdir()):
        return _dataset_root(target, archive_root)

    need_download = force_download or not archive.is_file()
    if not need_download and not _cached_archive_ok(archive, sha256, size, url):
        warnings.warn(
            f"untar_data: the cached archive {str(archive)!r} does not match its recorded size or sha256; "
            "downloading it again",
            stacklevel=2,
        )
        need_download = True
    if need_download:
        _record_path(archive).unlink(missing_ok=True)
        _, sha = _fetch(url, archive, sha256, size, progress, timeout=30)
        if sha256 is None:
            _write_record(archive, url, sha)

    try:
        extract_archive(archive, target, overwrite=force_download)
    except FileExistsError:
        # another process extracted the same dataset between our check and our rename: use its copy
        if not (target.is_dir() and any(target.iterdir())):
            raise
    return _dataset_root(target, archive_root)
