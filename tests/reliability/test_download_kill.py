"""kill -9 during a download and during an extraction: the next call cleans up what was left and succeeds,
and nothing outside the cache changed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from _archive_attack_kit import Member, serve, snapshot, tar_bytes

from lamina.data.external import untar_data

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::lamina.data.external.TrustOnFirstUseWarning"),
]

# the torch-free implementation, so the child starts in a fraction of a second
_CHILD = "import sys; from lamina._external.untar import untar_data; untar_data(sys.argv[1], progress=False)"


def _start(url: str, home: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LAMINA_HOME": str(home)}
    env.pop("LAMINA_DATA_MIRROR", None)
    return subprocess.Popen([sys.executable, "-c", _CHILD, url], env=env, stderr=subprocess.PIPE)


def _wait_for(what: Callable[[], bool], child: subprocess.Popen[bytes], timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not what():
        assert child.poll() is None, child.stderr.read() if child.stderr else child.returncode
        assert time.monotonic() < end, "timed out"
        time.sleep(0.005)


def _leftovers(folder: Path, suffix: str) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(suffix)] if folder.exists() else []


def test_kill_during_download_then_next_call_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("LAMINA_HOME", str(home))
    (tmp_path / "outside.txt").write_bytes(b"untouched")
    before = snapshot(tmp_path, skip=home)
    body = tar_bytes([Member("big/blob.bin", data=os.urandom(1 << 20))])
    with serve() as server:
        server.files["/k/big.tgz"] = body
        server.stall_after["/k/big.tgz"] = len(body) // 2  # half, then hold the connection open
        child = _start(server.url("/k/big.tgz"), home)
        archives = home / "archives"
        _wait_for(lambda: any(p.stat().st_size > 0 for p in _leftovers(archives, ".part")), child)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        assert len(_leftovers(archives, ".part")) == 1  # what a killed run leaves
        server.stall_after.clear()
        server.release.set()
        path = untar_data(server.url("/k/big.tgz"), progress=False)
    assert (path / "blob.bin").stat().st_size == 1 << 20
    assert _leftovers(archives, ".part") == []
    assert snapshot(tmp_path, skip=home) == before


def test_kill_during_extraction_then_next_call_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("LAMINA_HOME", str(home))
    (tmp_path / "outside.txt").write_bytes(b"untouched")
    before = snapshot(tmp_path, skip=home)
    many = [Member(f"many/{i:04d}.bin", data=b"\0" * (256 << 10)) for i in range(600)]  # 150 MiB, ~150 KiB
    with serve() as server:
        server.files["/k/many.tgz"] = tar_bytes(many)
        child = _start(server.url("/k/many.tgz"), home)
        data = home / "data"
        _wait_for(lambda: any(any(p.iterdir()) for p in _leftovers(data, ".extracting")), child)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        assert len(_leftovers(data, ".extracting")) == 1  # a half-extracted folder
        assert [
            p for p in data.iterdir() if not p.name.startswith(".")
        ] == []  # never mistaken for a good copy
        path = untar_data(server.url("/k/many.tgz"), progress=False)
        assert server.requests == ["/k/many.tgz"]  # the archive was complete: not downloaded again
    assert len(list(path.iterdir())) == 600
    assert _leftovers(data, ".extracting") == []
    assert snapshot(tmp_path, skip=home) == before
