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
        path = self.path.split("?", 1)[0]
        if path.startswith("http://"):  # asked as an HTTP proxy: GET http://HOST/PATH -> HOST/PATH
            path = path[len("http://"):]
        path = path.lstrip("/")
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
        # short poll interval: shutdown() waits for it, and every test stops a server
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

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


# -- fault injection --------------------------------------------------------------------------
# ``srv.faults[path] = fault`` where path is mirror-relative (no leading "/"). A fault is
# called for every request to that path; it answers (returns True) for its first ``times``
# requests and then lets the normal file serving take over. ``fault.calls`` counts requests.

import socket  # noqa: E402
import struct  # noqa: E402
import time  # noqa: E402


class Fault:
    def __init__(self, times: int | None = 1):
        self.times = times  # None: every request
        self.calls = 0
        self.fired = 0
        self._lock = threading.Lock()

    def __call__(self, handler: _Handler, path: str) -> bool:
        with self._lock:
            self.calls += 1
            if self.times is not None and self.fired >= self.times:
                return False
            self.fired += 1
        self.answer(handler, path)
        return True

    def answer(self, handler: _Handler, path: str) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def data(handler: _Handler, path: str) -> bytes:
        return (handler.server.root / path).read_bytes()

    def start_body(self, handler: _Handler, path: str) -> bytes:
        """Send the status and headers a correct server would (honouring Range); return the body."""
        data = self.data(handler, path)
        start = self.range_start(handler)
        body = data[start:]
        handler.send_response(206 if start else 200)
        handler.send_header("Content-Length", str(len(body)))
        if start:
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        handler.end_headers()
        return body

    @staticmethod
    def range_start(handler: _Handler) -> int:
        rng = handler.headers.get("Range") or ""
        if rng.startswith("bytes="):
            a = rng[6:].partition("-")[0]
            return int(a) if a else 0
        return 0


class DropMidBody(Fault):
    """Headers with the full Content-Length, ``after`` bytes of body, then a TCP reset."""

    def __init__(self, after: int, times: int | None = 1, reset: bool = True):
        super().__init__(times)
        self.after, self.reset = after, reset

    def answer(self, handler, path):
        body = self.start_body(handler, path)
        handler.wfile.write(body[: self.after])
        handler.wfile.flush()
        time.sleep(0.2)  # let the client read what was sent: a reset discards unread data
        handler.close_connection = True
        if self.reset:  # RST instead of FIN: "connection reset by peer"
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.connection.close()


class ShortBody(DropMidBody):
    """Body shorter than Content-Length, then a clean close (FIN)."""

    def __init__(self, after: int, times: int | None = 1):
        super().__init__(after, times, reset=False)


class Status(Fault):
    """An error status (500, 429, 404, ...) with optional headers and a tiny body."""

    def __init__(self, code: int, times: int | None = 1, headers: dict[str, str] | None = None):
        super().__init__(times)
        self.code, self.headers = code, headers or {}

    def answer(self, handler, path):
        body = f"fault {self.code}\n".encode()
        handler.send_response(self.code)
        for k, v in self.headers.items():
            handler.send_header(k, v)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


class SlowDrip(Fault):
    """The right bytes, ``chunk`` at a time with ``delay`` seconds between chunks."""

    def __init__(self, chunk: int, delay: float, times: int | None = 1):
        super().__init__(times)
        self.chunk, self.delay = chunk, delay

    def answer(self, handler, path):
        body = self.start_body(handler, path)
        try:
            for i in range(0, len(body), self.chunk):
                handler.wfile.write(body[i : i + self.chunk])
                handler.wfile.flush()
                time.sleep(self.delay)
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True


class IgnoreRange(Fault):
    """Always the whole file with 200, whatever Range asked for."""

    def answer(self, handler, path):
        data = self.data(handler, path)
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


class WrongRange(Fault):
    """For a Range request, a 206 whose Content-Range starts ``shift`` bytes elsewhere."""

    def __init__(self, shift: int = -100, times: int | None = 1):
        super().__init__(times)
        self.shift = shift

    def __call__(self, handler, path):
        if not handler.headers.get("Range"):
            with self._lock:
                self.calls += 1
            return False
        return super().__call__(handler, path)

    def answer(self, handler, path):
        data = self.data(handler, path)
        start = max(0, self.range_start(handler) + self.shift)
        body = data[start:]
        handler.send_response(206)
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        handler.end_headers()
        handler.wfile.write(body)


class ServeBytes(Fault):
    """Other bytes than the file holds (a mirror with a corrupt or substituted copy)."""

    def __init__(self, data: bytes, times: int | None = None):
        super().__init__(times)
        self.payload = data

    def answer(self, handler, path):
        handler.send_file(path, data=self.payload)


class Redirect(Fault):
    """A redirect to ``location`` (absolute URL or path on this server)."""

    def __init__(self, location: str, code: int = 302, times: int | None = None):
        super().__init__(times)
        self.location, self.code = location, code

    def answer(self, handler, path):
        handler.send_response(self.code)
        handler.send_header("Location", self.location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()


class Chain(Fault):
    """Several faults in turn: each answers its ``times`` requests, then the next one's turn."""

    def __init__(self, *faults: Fault):
        super().__init__(None)
        self.faults = faults

    def __call__(self, handler, path):
        with self._lock:
            self.calls += 1
        for f in self.faults:
            with f._lock:
                spent = f.times is not None and f.fired >= f.times
            if not spent:
                return f(handler, path)
        return False
