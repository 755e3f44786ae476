"""Property: whatever the members (names, link targets, types), extraction creates or changes nothing
outside the destination, and either the whole archive extracts or it fails cleanly with no folder left."""

from __future__ import annotations

import tempfile
from pathlib import Path

from _archive_attack_kit import Member, cve_chain, snapshot, tar_bytes
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lamina.data.external import UnsafeArchiveError, extract_archive

_PART = st.sampled_from(["a", "b", "A", "..", ".", "", "x.txt", "victim", "d" * 40, "\\", "C:"])
_NAME = st.lists(_PART, min_size=1, max_size=4).map("/".join) | st.just("/abs")
_MEMBER = st.builds(
    Member,
    name=_NAME,
    kind=st.sampled_from(["file", "file", "dir", "sym", "hard", "fifo"]),
    target=_NAME,
    data=st.sampled_from([b"", b"payload"]),
)
RUNS = {"cases": 0}


def _check(members: list[Member]) -> None:
    RUNS["cases"] += 1
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        victim = work / "victim"
        victim.mkdir()
        (victim / "existing.txt").write_bytes(b"precious")
        archive = work / "fuzz.tar"
        archive.write_bytes(tar_bytes(members, mode="w"))
        out = work / "out"
        out.mkdir()
        dest = out / "dest"
        before = snapshot(work, skip=out)
        try:
            extract_archive(archive, dest)
        except (UnsafeArchiveError, ValueError):
            assert list(out.iterdir()) == []  # no partial folder, no temporary sibling
        else:
            assert [p.name for p in out.iterdir()] == ["dest"]
            assert all(not p.is_symlink() and (p.is_file() or p.is_dir()) for p in dest.rglob("*"))
            names = {m.name.strip("/") for m in members if m.kind == "file"}
            assert len(names) == sum(1 for p in dest.rglob("*") if p.is_file())  # the whole archive
        assert snapshot(work, skip=out) == before


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_MEMBER, min_size=1, max_size=6))
@example(cve_chain("../../victim"))  # the chain that escaped the old code on Python 3.11.7
@example([Member("a", "sym", "."), Member("b", "hard", "a"), Member("b/victim/existing.txt", data=b"x")])
@example([Member("x.txt", data=b"one"), Member("x.txt", "hard", "x.txt"), Member("x.txt", data=b"two")])
def test_extraction_never_touches_anything_outside(members: list[Member]) -> None:
    _check(members)


def test_fuzz_ran_enough_cases() -> None:
    # pytest runs the tests of a file in order: the property above has run by now
    assert RUNS["cases"] >= 100, RUNS
