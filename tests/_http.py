"""A loopback HTTP server for tests (the machine has no internet): serves bytes by path, can misbehave
(announce more bytes than it sends, send no length, stall part way until released), and records the
requests it got."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class LoopbackServer:
    """What the test server serves (path -> bytes) and how it misbehaves, plus the requests it got."""

    files: dict[str, bytes] = field(default_factory=dict)
    extra_length: dict[str, int] = field(default_factory=dict)  # announce this many more bytes, then hang up
    no_length: set[str] = field(default_factory=set)  # send no Content-Length header
    stall_after: dict[str, int] = field(default_factory=dict)  # send this many bytes, then wait for release
    release: threading.Event = field(default_factory=threading.Event)
    requests: list[str] = field(default_factory=list)
    base: str = ""

    def url(self, path: str) -> str:
        return self.base + path


@contextlib.contextmanager
def serve() -> Iterator[LoopbackServer]:
    """A running server on 127.0.0.1 (a free port) for the duration of the block."""
    state = LoopbackServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404, "Not Found")
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            if self.path not in state.no_length:
                self.send_header("Content-Length", str(len(body) + state.extra_length.get(self.path, 0)))
            self.end_headers()
            stall = state.stall_after.get(self.path)
            try:
                if stall is not None:
                    self.wfile.write(body[:stall])
                    self.wfile.flush()
                    state.release.wait(30)
                    body = body[stall:]
                self.wfile.write(body)
            except OSError:  # the client went away
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
