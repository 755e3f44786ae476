"""core.files: the atomic write every layer uses (checkpoints, exports, the embedded samples)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lamina.core import atomic_write_bytes, remove_stale_temps


def test_atomic_write_replaces_whole_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "a.txt"
    atomic_write_bytes(path, lambda tmp: Path(tmp).write_text("one"))
    atomic_write_bytes(path, lambda tmp: Path(tmp).write_text("two"))
    assert path.read_text() == "two"
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.txt"]


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("old")

    def boom(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write_bytes(path, boom)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_stale_temp_of_a_dead_process_is_removed(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    stale = tmp_path / f".a.txt.lamina-tmp-{2**22 + 12345}-abc"  # a pid above pid_max: no such process
    stale.write_text("x")
    assert remove_stale_temps(path) == [stale]
    assert not stale.exists() and os.listdir(tmp_path) == []
