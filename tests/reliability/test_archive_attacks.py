"""Security issue 12, archives: crafted tar and zip files served over loopback HTTP to `untar_data`.

Each attack must end in a clear error (or a safe result) with nothing outside the destination created or
changed and no partial folder left. Every test here failed on the code before the fix.
"""

from __future__ import annotations

import tarfile
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from _archive_attack_kit import Member, Served, cve_chain, serve, snapshot, tar_bytes, zip_bytes

from lamina.data.external import ExtractLimits, UnsafeArchiveError, extract_archive, untar_data

pytestmark = pytest.mark.filterwarnings("ignore::lamina.data.external.TrustOnFirstUseWarning")


@pytest.fixture
def server() -> Iterator[Served]:
    with serve() as state:
        yield state


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "home"
    monkeypatch.setenv("LAMINA_HOME", str(root))
    monkeypatch.delenv("LAMINA_DATA_MIRROR", raising=False)
    return root


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "existing.txt").write_bytes(b"precious")
    return victim


def _data_left(home: Path) -> list[str]:
    folder = home / "data"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_long_path_symlink_chain_with_hardlink_aliases_is_refused(
    server: Served, home: Path, tmp_path: Path
) -> None:
    # home/data/<key>/ is extracted into; three levels up is tmp_path, where the victim folder is
    victim = _victim(tmp_path)
    server.files["/evil/chain.tar"] = tar_bytes(cve_chain("../../../victim"), mode="w")
    before = snapshot(tmp_path, skip=home)
    with pytest.raises(UnsafeArchiveError, match=r"(?s)link.*help:"):
        untar_data(server.url("/evil/chain.tar"), progress=False)
    assert snapshot(tmp_path, skip=home) == before
    assert (victim / "existing.txt").read_bytes() == b"precious"
    assert _data_left(home) == []


@pytest.mark.parametrize(
    "members",
    [
        [Member("pkg/a.txt", data=b"first"), Member("pkg/a.txt", data=b"second")],
        [Member("pkg/a.txt", data=b"first"), Member("./pkg//a.txt", data=b"second")],
        [Member("pkg/A.txt", data=b"upper"), Member("pkg/a.txt", data=b"lower")],
        [
            Member(unicodedata.normalize("NFC", "pkg/caf\u00e9.txt"), data=b"nfc"),
            Member(unicodedata.normalize("NFD", "pkg/caf\u00e9.txt"), data=b"nfd"),
        ],
        [Member("pkg/x", data=b"file"), Member("pkg/x/y", data=b"inside a file")],
    ],
    ids=["same", "normalised", "case", "unicode", "file-then-folder"],
)
def test_duplicate_member_names_are_refused(server: Served, home: Path, members: list[Member]) -> None:
    server.files["/dup.tgz"] = tar_bytes(members)
    with pytest.raises(UnsafeArchiveError, match=r"(?s)(duplicate|is a file).*help:"):
        untar_data(server.url("/dup.tgz"), progress=False)
    assert _data_left(home) == []


def test_duplicate_zip_names_are_refused(tmp_path: Path) -> None:
    archive = tmp_path / "dup.zip"
    archive.write_bytes(zip_bytes([("a.txt", b"one"), ("a.txt", b"two")]))
    with pytest.raises(UnsafeArchiveError, match="duplicate"):
        extract_archive(archive, tmp_path / "out" / "dest")
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_backslash_names_are_refused(tmp_path: Path) -> None:
    # a separator on Windows; '..\\', '\\x' and 'C:' names were already refused (tests/data/test_external.py)
    archive = tmp_path / "names.zip"
    archive.write_bytes(zip_bytes([("pkg/ok.txt", b"ok"), ("pkg\\evil.txt", b"evil")]))
    with pytest.raises(UnsafeArchiveError, match="help:"):
        extract_archive(archive, tmp_path / "out" / "dest")
    assert list((tmp_path / "out").iterdir()) == []


def test_zip_bomb_stops_at_the_cap_while_streaming(server: Served, home: Path) -> None:
    body = zip_bytes([("bomb/zeros.bin", b"\0" * (32 << 20))])  # 32 MiB in ~32 KiB
    assert len(body) < 100_000
    server.files["/bomb.zip"] = body
    with pytest.raises(UnsafeArchiveError, match=r"(?s)max_bytes.*help:"):
        untar_data(server.url("/bomb.zip"), progress=False, limits=ExtractLimits(max_bytes=1 << 20))
    assert _data_left(home) == []


def test_tar_bomb_stops_at_the_per_file_cap(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.tgz"
    archive.write_bytes(tar_bytes([Member("a/zeros.bin", data=b"\0" * (8 << 20))]))
    with pytest.raises(UnsafeArchiveError, match="max_file_bytes"):
        extract_archive(archive, tmp_path / "out" / "d", limits=ExtractLimits(max_file_bytes=1 << 20))
    with pytest.raises(UnsafeArchiveError, match="max_members"):
        extract_archive(archive, tmp_path / "out" / "d", limits=ExtractLimits(max_members=0))
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("filename", ["..tgz", ".tgz", "%2e%2e.tgz", "...tgz"])
def test_dotdot_url_file_name_cannot_replace_the_cache(server: Served, home: Path, filename: str) -> None:
    other = home / "data" / "other_dataset"
    other.mkdir(parents=True)
    (other / "keep.txt").write_bytes(b"keep")
    before = snapshot(home)
    server.files[f"/x/{filename}"] = tar_bytes([Member("pkg/a.txt", data=b"alpha")])
    path = untar_data(server.url(f"/x/{filename}"), force_download=True, progress=False)
    assert (path / "a.txt").read_bytes() == b"alpha"
    assert home / "data" in path.parents and path.parent.parent == home / "data"
    after = snapshot(home)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing there before was changed


def test_a_url_cannot_shadow_a_registry_name(server: Served, home: Path) -> None:
    server.files["/x/adult.tgz"] = tar_bytes([Member("adult_sample/adult.csv", data=b"not the real one")])
    path = untar_data(server.url("/x/adult.tgz"), progress=False)
    assert home / "data" / "adult" not in (path, *path.parents)
    assert not (home / "archives" / "adult.tgz").exists()


def test_same_file_name_from_two_urls_is_two_datasets(server: Served, home: Path) -> None:
    server.files["/one/d.tgz"] = tar_bytes([Member("d/v.txt", data=b"one")])
    server.files["/two/d.tgz"] = tar_bytes([Member("d/v.txt", data=b"two")])
    first = untar_data(server.url("/one/d.tgz"), progress=False)
    second = untar_data(server.url("/two/d.tgz"), progress=False)
    assert (first / "v.txt").read_bytes() == b"one" and (second / "v.txt").read_bytes() == b"two"


@pytest.mark.parametrize("kind", ["sym", "hard"])
def test_links_inside_the_destination_are_refused(tmp_path: Path, kind: str) -> None:
    archive = tmp_path / "links.tgz"
    archive.write_bytes(tar_bytes([Member("pkg/a.txt", data=b"a"), Member("pkg/b", kind, "pkg/a.txt")]))
    with pytest.raises(UnsafeArchiveError, match=r"(?s)'pkg/b'.*help:"):
        extract_archive(archive, tmp_path / "out" / "dest")
    assert list((tmp_path / "out").iterdir()) == []
    assert tarfile.is_tarfile(archive)
