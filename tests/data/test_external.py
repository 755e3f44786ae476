"""Tests for lamina.data.external: registry, verified atomic download, safe extraction, untar_data cache.

The machine has no internet, so every download comes from a loopback HTTP server (127.0.0.1, port 0)
that serves archives generated here and counts the requests it gets.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
import tarfile
import urllib.parse
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from _http import LoopbackServer, serve
from lamina.data.external import (
    DATASETS,
    ChecksumError,
    DatasetInfo,
    DownloadError,
    TrustOnFirstUseWarning,
    UnknownDatasetError,
    UnsafeArchiveError,
    cache_dir,
    download_url,
    extract_archive,
    get_dataset,
    list_datasets,
    untar_data,
)

pytestmark = pytest.mark.filterwarnings("ignore::lamina.data.external.TrustOnFirstUseWarning")

# ---------------------------------------------------------------------------------------------- helpers


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with serve() as state:
        yield state


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "lamina_home"
    monkeypatch.setenv("LAMINA_HOME", str(root))
    monkeypatch.delenv("LAMINA_DATA_MIRROR", raising=False)
    return root


def make_tar(files: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:  # type: ignore[call-overload]
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def make_evil_tar(path: Path, *members: tarfile.TarInfo) -> Path:
    """A .tgz holding one good file and then `members` (each with no content unless a regular file)."""
    with tarfile.open(path, "w:gz") as tf:
        good = tarfile.TarInfo("pkg/good.txt")
        good.size = 2
        tf.addfile(good, io.BytesIO(b"ok"))
        for m in members:
            tf.addfile(m, io.BytesIO(b"x" * m.size) if m.isfile() else None)
    return path


def make_zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def tinfo(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "", size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.size = size
    return info


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def listing(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) if folder.exists() else []


TINY = {"tiny/a.txt": b"alpha", "tiny/sub/b.txt": b"beta"}


# ---------------------------------------------------------------------------------------------- registry


def test_registry_entries_are_well_formed() -> None:
    assert len(DATASETS) >= 15
    for key, info in DATASETS.items():
        assert isinstance(info, DatasetInfo)
        assert info.name == key and info.name
        assert urllib.parse.urlsplit(info.url).scheme == "https", info.url
        assert info.url.endswith((".tgz", ".zip")), info.url
        assert info.size_bytes is None or info.size_bytes > 0
        assert info.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", info.sha256)
        assert info.description
    with pytest.raises(TypeError):
        DATASETS["x"] = DATASETS["mnist"]  # type: ignore[index]


def test_registry_covers_the_usual_datasets() -> None:
    names = list_datasets()
    assert names == sorted(names)
    for required in (
        "imagenette",
        "imagenette_320",
        "imagenette_160",
        "imagewoof",
        "imagewoof_320",
        "imagewoof_160",
        "pets",
        "mnist",
        "cifar10",
        "cifar100",
        "camvid_tiny",
        "camvid",
        "adult",
        "movielens_100k",
        "imdb",
    ):
        assert required in names
    assert DATASETS["imagenette_160"].url == "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz"
    assert DATASETS["movielens_100k"].url == "https://files.grouplens.org/datasets/movielens/ml-100k.zip"


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(KeyError) as excinfo:
        get_dataset("imagenete_160")
    assert isinstance(excinfo.value, UnknownDatasetError)
    message = str(excinfo.value)
    assert "'imagenete_160'" in message and "'imagenette_160'" in message and "help:" in message
    with pytest.raises(UnknownDatasetError, match="help:"):
        untar_data("no-such-dataset")


def test_cache_dir_is_read_when_called(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAMINA_HOME", str(tmp_path / "a"))
    assert cache_dir() == tmp_path / "a"
    monkeypatch.setenv("LAMINA_HOME", str(tmp_path / "b"))
    assert cache_dir() == tmp_path / "b"
    monkeypatch.delenv("LAMINA_HOME")
    platformdirs = pytest.importorskip("platformdirs")  # imported here: lamina imports it only when needed
    assert cache_dir() == Path(platformdirs.user_cache_dir("lamina"))
    assert not (tmp_path / "b").exists()  # asking for the folder creates nothing


# ---------------------------------------------------------------------------------------------- download


def test_download_url_verifies_and_writes(server: LoopbackServer, tmp_path: Path) -> None:
    body = os.urandom(3000)
    server.files["/f.bin"] = body
    dest = tmp_path / "dl" / "f.bin"
    assert download_url(server.url("/f.bin"), dest, sha256=sha(body).upper(), size=3000) == dest
    assert dest.read_bytes() == body
    assert listing(dest.parent) == ["f.bin"]
    umask = os.umask(0o022)
    os.umask(umask)
    assert dest.stat().st_mode & 0o777 == 0o666 & ~umask  # the usual permissions, not a temp file's 0o600


def test_download_url_shows_progress_on_a_terminal(
    server: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.files["/f.bin"] = b"x" * 5000
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    dest = download_url(server.url("/f.bin"), tmp_path / "f.bin", progress=True)
    assert dest.read_bytes() == b"x" * 5000


def test_wrong_checksum_leaves_nothing(server: LoopbackServer, tmp_path: Path) -> None:
    server.files["/f.bin"] = b"payload"
    folder = tmp_path / "archives"
    with pytest.raises(ChecksumError) as excinfo:
        download_url(server.url("/f.bin"), folder / "f.bin", sha256="0" * 64)
    message = str(excinfo.value)
    assert server.url("/f.bin") in message and "0" * 64 in message and sha(b"payload") in message
    assert "help:" in message
    assert listing(folder) == []


@pytest.mark.parametrize("how", ["content-length", "expected-size"])
def test_truncated_download_leaves_nothing(server: LoopbackServer, tmp_path: Path, how: str) -> None:
    body = b"y" * 4096
    server.files["/f.bin"] = body
    if how == "content-length":
        server.extra_length["/f.bin"] = 1000  # announces 5096 bytes, sends 4096, hangs up
        size = None
    else:
        server.no_length.add("/f.bin")  # no Content-Length: only the expected size can tell
        size = 5096
    folder = tmp_path / "archives"
    with pytest.raises(DownloadError) as excinfo:
        download_url(server.url("/f.bin"), folder / "f.bin", size=size, progress=False, timeout=5)
    message = str(excinfo.value)
    assert server.url("/f.bin") in message and "4,096" in message and "5,096" in message
    assert "help:" in message
    assert listing(folder) == []


def test_announced_size_disagreeing_with_expected_fails_early(server: LoopbackServer, tmp_path: Path) -> None:
    server.files["/f.bin"] = b"z" * 100
    with pytest.raises(DownloadError, match="announces 100 bytes, expected 99 bytes"):
        download_url(server.url("/f.bin"), tmp_path / "f.bin", size=99)
    assert listing(tmp_path) == []


def test_http_error_names_url_and_status(server: LoopbackServer, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"(?s)/missing.tgz.*HTTP 404.*help:"):
        download_url(server.url("/missing.tgz"), tmp_path / "missing.tgz")
    assert listing(tmp_path) == []


# ---------------------------------------------------------------------------------------------- untar_data


def test_untar_tgz_downloads_extracts_and_records_checksum(server: LoopbackServer, home: Path) -> None:
    body = make_tar(TINY)
    server.files["/d/tiny.tgz"] = body
    with pytest.warns(TrustOnFirstUseWarning, match=rf"(?s){sha(body)}.*help: .*sha256="):
        path = untar_data(server.url("/d/tiny.tgz"))
    key = path.parent.name  # the file name's stem, then a hash of the whole URL
    assert re.fullmatch(r"tiny-[0-9a-f]{16}", key)
    assert path == home / "data" / key / "tiny"  # the single top-level folder
    assert (path / "a.txt").read_bytes() == b"alpha"
    assert (path / "sub" / "b.txt").read_bytes() == b"beta"
    assert listing(home / "archives") == [f"{key}.tgz", f"{key}.tgz.sha256.json"]
    assert sha(body) in (home / "archives" / f"{key}.tgz.sha256.json").read_text()
    assert listing(home / "data") == [
        key,
        *(f"{key}/{p}" for p in ["tiny", "tiny/a.txt", "tiny/sub", "tiny/sub/b.txt"]),
    ]


def test_untar_with_a_pinned_sha256_does_not_warn(server: LoopbackServer, home: Path) -> None:
    body = make_tar(TINY)
    server.files["/d/tiny.tgz"] = body
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = untar_data(server.url("/d/tiny.tgz"), sha256=sha(body))
    assert (path / "a.txt").read_bytes() == b"alpha"
    with pytest.raises(ChecksumError):
        untar_data(server.url("/d/tiny.tgz"), sha256="0" * 64, force_download=True)


def test_untar_zip_with_several_top_level_entries(server: LoopbackServer, home: Path) -> None:
    server.files["/z/flat.zip"] = make_zip({"one.csv": b"a,b\n1,2\n", "two/x.txt": b"x"})
    path = untar_data(server.url("/z/flat.zip"), progress=False)
    assert path.parent == home / "data" and path.name.startswith("flat-")
    assert (path / "one.csv").read_text() == "a,b\n1,2\n"
    assert (path / "two" / "x.txt").read_bytes() == b"x"


@pytest.mark.parametrize("suffix,mode", [(".tar", "w"), (".tar.bz2", "w:bz2"), (".tar.xz", "w:xz")])
def test_untar_other_tar_flavours(server: LoopbackServer, home: Path, suffix: str, mode: str) -> None:
    server.files[f"/t/tiny{suffix}"] = make_tar(TINY, mode=mode)
    path = untar_data(server.url(f"/t/tiny{suffix}"))
    assert (path / "a.txt").read_bytes() == b"alpha"


def test_second_call_reuses_cache_without_network(server: LoopbackServer, home: Path) -> None:
    server.files["/d/tiny.tgz"] = make_tar(TINY)
    first = untar_data(server.url("/d/tiny.tgz"))
    second = untar_data(server.url("/d/tiny.tgz"))
    assert first == second
    assert server.requests == ["/d/tiny.tgz"]


def test_cached_archive_is_extracted_again_without_network(server: LoopbackServer, home: Path) -> None:
    import shutil

    server.files["/d/tiny.tgz"] = make_tar(TINY)
    untar_data(server.url("/d/tiny.tgz"))
    shutil.rmtree(home / "data")
    path = untar_data(server.url("/d/tiny.tgz"))
    assert (path / "a.txt").read_bytes() == b"alpha"
    assert server.requests == ["/d/tiny.tgz"]


def test_corrupt_cached_archive_is_downloaded_again(server: LoopbackServer, home: Path) -> None:
    import shutil

    server.files["/d/tiny.tgz"] = make_tar(TINY)
    first = untar_data(server.url("/d/tiny.tgz"))
    shutil.rmtree(home / "data")
    archive = home / "archives" / f"{first.parent.name}.tgz"
    archive.write_bytes(archive.read_bytes()[:-10] + b"0123456789")
    with pytest.warns(UserWarning, match="downloading it again"):
        path = untar_data(server.url("/d/tiny.tgz"))
    assert (path / "a.txt").read_bytes() == b"alpha"
    assert len(server.requests) == 2


def test_force_download_fetches_and_replaces(server: LoopbackServer, home: Path) -> None:
    server.files["/d/tiny.tgz"] = make_tar(TINY)
    untar_data(server.url("/d/tiny.tgz"))
    new = make_tar({"tiny/a.txt": b"ALPHA v2"})
    server.files["/d/tiny.tgz"] = new
    path = untar_data(server.url("/d/tiny.tgz"), force_download=True)
    assert (path / "a.txt").read_bytes() == b"ALPHA v2"
    assert not (path / "sub").exists()
    assert len(server.requests) == 2
    assert sha(new) in (home / "archives" / f"{path.parent.name}.tgz.sha256.json").read_text()
    assert [p.name for p in (home / "data").iterdir()] == [path.parent.name]  # no temporary folders left


def test_truncated_download_via_untar_data_leaves_nothing(server: LoopbackServer, home: Path) -> None:
    server.files["/d/tiny.tgz"] = make_tar(TINY)
    server.extra_length["/d/tiny.tgz"] = 500
    with pytest.raises(DownloadError, match="truncated"):
        untar_data(server.url("/d/tiny.tgz"))
    assert listing(home / "archives") == []
    assert listing(home / "data") == []


def test_untar_data_refuses_urls_that_are_not_archives(home: Path) -> None:
    with pytest.raises(ValueError, match=r"(?s)does not end in an archive name.*help: .*download_url"):
        untar_data("https://example.com/data.csv")
    with pytest.raises(ValueError, match="expected http or https"):
        untar_data("ftp://example.com/data.tgz")


def _serve_registry_entry(server: LoopbackServer, name: str) -> str:
    """Serve a generated archive at a registry entry's URL path, padded to the size the registry expects."""
    info = DATASETS[name]
    root = info.archive_root or name
    body = make_tar({f"{root}/{name}.csv": b"age,salary\n39,<50k\n"})
    if info.size_bytes is not None:
        body += b"\0" * (info.size_bytes - len(body))  # gzip readers skip trailing zero padding
    path = urllib.parse.urlsplit(info.url).path
    server.files[path] = body
    return path


@pytest.mark.parametrize("via", ["base_url", "env"])
def test_registry_entry_redirected_to_a_mirror(
    server: LoopbackServer, home: Path, monkeypatch: pytest.MonkeyPatch, via: str
) -> None:
    path = _serve_registry_entry(server, "adult")
    if via == "base_url":
        result = untar_data("adult", base_url=server.base + "/")
    else:
        monkeypatch.setenv("LAMINA_DATA_MIRROR", server.base)
        result = untar_data("adult")
    assert result == home / "data" / "adult" / "adult_sample"
    assert (result / "adult.csv").read_text().startswith("age,salary")
    assert server.requests == [path]
    assert (home / "archives" / "adult.tgz").stat().st_size == DATASETS["adult"].size_bytes


def test_mirror_with_a_path_prefix(server: LoopbackServer, home: Path) -> None:
    path = _serve_registry_entry(server, "adult")
    server.files["/mirror" + path] = server.files.pop(path)
    assert untar_data("adult", base_url=server.base + "/mirror").name == "adult_sample"
    assert server.requests == ["/mirror" + path]


def test_registry_size_mismatch_from_a_mirror_is_refused(server: LoopbackServer, home: Path) -> None:
    path = urllib.parse.urlsplit(DATASETS["adult"].url).path
    server.files[path] = make_tar(TINY)  # not the size the registry expects
    with pytest.raises(DownloadError, match="expected 968,212 bytes"):
        untar_data("adult", base_url=server.base)
    assert listing(home / "archives") == []
    assert listing(home / "data") == []


# ---------------------------------------------------------------------------------------------- extract


EVIL_TAR_MEMBERS: dict[str, Callable[[], tarfile.TarInfo]] = {
    "dotdot": lambda: tinfo("../evil", size=4),
    "nested-dotdot": lambda: tinfo("pkg/../../evil", size=4),
    "absolute": lambda: tinfo("/tmp/lamina-evil", size=4),
    "symlink-absolute": lambda: tinfo("pkg/link", tarfile.SYMTYPE, linkname="/etc/passwd"),
    "symlink-relative": lambda: tinfo("pkg/link", tarfile.SYMTYPE, linkname="../../evil"),
    "hardlink": lambda: tinfo("pkg/hard", tarfile.LNKTYPE, linkname="../evil"),
    "device": lambda: tinfo("pkg/dev", tarfile.CHRTYPE),
    "fifo": lambda: tinfo("pkg/fifo", tarfile.FIFOTYPE),
}


@pytest.mark.parametrize("case", sorted(EVIL_TAR_MEMBERS))
def test_unsafe_tar_is_refused_and_nothing_extracted(tmp_path: Path, case: str) -> None:
    member = EVIL_TAR_MEMBERS[case]()
    archive = make_evil_tar(tmp_path / "evil.tgz", member)
    dest = tmp_path / "out" / "dest"
    with pytest.raises(UnsafeArchiveError) as excinfo:
        extract_archive(archive, dest)
    message = str(excinfo.value)
    assert "evil.tgz" in message and repr(member.name) in message and "help:" in message
    assert "data filter" not in message  # lamina's own checks caught it, before tarfile's
    assert not dest.exists()
    assert listing(tmp_path / "out") == []  # no temporary sibling left either
    assert not (tmp_path / "evil").exists()


def test_tar_written_through_its_own_symlink_is_refused(tmp_path: Path) -> None:
    archive = make_evil_tar(
        tmp_path / "evil.tgz",
        tinfo("pkg/up", tarfile.SYMTYPE, linkname=".."),  # inside dest on its own...
        tinfo("pkg/up/escape.txt", size=3),  # ...but writing through it would escape
    )
    with pytest.raises(UnsafeArchiveError, match="links are refused"):
        extract_archive(archive, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
    assert not (tmp_path / "escape.txt").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_every_link_is_refused_even_inside_dest(tmp_path: Path, kind: bytes) -> None:
    archive = make_evil_tar(tmp_path / "ok.tgz", tinfo("pkg/alias.txt", kind, linkname="pkg/good.txt"))
    with pytest.raises(UnsafeArchiveError, match=r"(?s)'pkg/alias.txt' is a (symbolic|hard) link.*help:"):
        extract_archive(archive, tmp_path / "dest")
    assert listing(tmp_path) == ["ok.tgz"]


@pytest.mark.parametrize("name", ["../evil", "/evil", "a/../../evil"])
def test_unsafe_zip_is_refused(tmp_path: Path, name: str) -> None:
    archive = tmp_path / "evil.zip"
    archive.write_bytes(make_zip({"pkg/good.txt": b"ok", name: b"evil"}))
    dest = tmp_path / "out" / "dest"
    with pytest.raises(UnsafeArchiveError) as excinfo:
        extract_archive(archive, dest)
    assert "evil.zip" in str(excinfo.value) and repr(name) in str(excinfo.value)
    assert not dest.exists()
    assert listing(tmp_path / "out") == []


def test_corrupt_archive_leaves_nothing(tmp_path: Path) -> None:
    archive = tmp_path / "broken.tgz"
    archive.write_bytes(make_tar(TINY)[:40])
    dest = tmp_path / "out" / "dest"
    with pytest.raises(ValueError, match=r"(?s)corrupt or truncated.*help:"):
        extract_archive(archive, dest)
    assert listing(tmp_path / "out") == []


def test_extract_refuses_existing_dest_unless_overwrite(tmp_path: Path) -> None:
    archive = tmp_path / "tiny.tgz"
    archive.write_bytes(make_tar(TINY))
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        extract_archive(archive, dest)
    assert extract_archive(archive, dest, overwrite=True) == dest
    assert listing(dest) == ["tiny", "tiny/a.txt", "tiny/sub", "tiny/sub/b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "tiny.tgz"]


def test_extract_sniffs_format_and_rejects_non_archives(tmp_path: Path) -> None:
    unnamed = tmp_path / "blob"
    unnamed.write_bytes(make_zip({"x.txt": b"x"}))
    assert (extract_archive(unnamed, tmp_path / "d") / "x.txt").read_bytes() == b"x"
    page = tmp_path / "page"
    page.write_text("<html>Access denied</html>")
    with pytest.raises(ValueError, match="neither a tar nor a zip"):
        extract_archive(page, tmp_path / "e")


# ---------------------------------------------------------------------------------------------- cli


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys; from lamina.cli import main; r = main(sys.argv[1:]); "
        "print('torch' in sys.modules); sys.exit(r)"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_cli_datasets_lists_without_importing_torch() -> None:
    r = _cli("datasets", env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[-1] == "False"  # torch was never imported
    assert any(line.startswith("imagenette_160") for line in lines)


def test_cli_datasets_get_downloads_and_prints_the_path(server: LoopbackServer, home: Path) -> None:
    _serve_registry_entry(server, "adult")
    env = {**os.environ, "LAMINA_HOME": str(home), "LAMINA_DATA_MIRROR": server.base}
    r = _cli("datasets", "get", "adult", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [str(home / "data" / "adult" / "adult_sample"), "False"]
    assert "TrustOnFirstUseWarning" in r.stderr  # the first download of an unpinned archive is flagged
    bad = _cli("datasets", "get", "adlt", env=env)
    assert bad.returncode != 0 and "'adult'" in bad.stderr and "help:" in bad.stderr
