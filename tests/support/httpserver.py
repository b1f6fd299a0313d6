"""A real HTTP server on 127.0.0.1 serving a directory (mirror layout), with Range support.

Faults can be injected per path by tests (see ``LoopbackServer.faults``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        path = self.path.split("?", 1)[0].lstrip("/")
        with self.server.lock:
            self.server.requests.append((self.command, path, self.headers.get("Range")))
            fault = self.server.faults.get(path)
        if fault is not None and fault(self, path) is True:
            return  # the fault answered
        self.send_file(path, head)

    def send_file(self, path: str, head: bool = False, data: bytes | None = None) -> None:
        if data is None:
            target = (self.server.root / path).resolve()
            if self.server.root not in target.parents or not target.is_file():
                self.send_error(404)
                return
            data = target.read_bytes()
        start, end, status = 0, len(data) - 1, 200
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and self.server.honour_range:
            a, _, b = rng[6:].partition("-")
            start = int(a) if a else 0
            end = int(b) if b else len(data) - 1
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start : end + 1]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        if not head:
            self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class LoopbackServer:
    """``with LoopbackServer(root) as srv: srv.url`` -> ``http://127.0.0.1:PORT``."""

    def __init__(self, root: Path):
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.root = Path(root).resolve()
        self.httpd.lock = threading.Lock()
        self.httpd.requests = []
        self.httpd.faults = {}
        self.httpd.honour_range = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def requests(self) -> list[tuple[str, str, str | None]]:
        return self.httpd.requests

    @property
    def faults(self) -> dict[str, Callable]:
        """path -> fn(handler, path); return True when the fault has answered the request."""
        return self.httpd.faults

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
