"""A small, real OCI distribution registry in memory on 127.0.0.1, for unit tests of the
registry client, image archives and bundles (no daemon, no subprocess).

Implements what netship uses: ``/v2/``, manifests (GET/HEAD/PUT by tag or digest), blobs
(GET/HEAD), uploads (POST with optional ``mount``/``from``, monolithic PUT ``?digest=``).
Auth: none, ``basic`` or ``bearer`` (its own token endpoint at ``/token``, which wants the
basic credentials when users are set). Faults: ``corrupt`` (serve other bytes for a blob),
``truncate`` (serve fewer bytes). Every request is recorded in ``requests``.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import secrets
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    # -- helpers
    def _send(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False) -> None:
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and not head and self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, code: int, err: str) -> None:
        self._send(code, json.dumps({"errors": [{"code": err, "message": err.lower()}]}).encode(),
                   {"Content-Type": "application/json"})

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _authorized(self) -> bool:
        reg = self.server.reg
        got = self.headers.get("Authorization", "")
        if reg.auth is None:
            return True
        if reg.auth == "basic":
            ok = any(got == "Basic " + base64.b64encode(f"{u}:{p}".encode()).decode() for u, p in reg.users.items())
            if not ok:
                self._send(401, b"", {"WWW-Authenticate": 'Basic realm="mini"'})
            return ok
        if got.startswith("Bearer ") and got[7:] in reg.tokens:
            return True
        host, port = self.server.server_address[:2]
        self._send(401, b"", {"WWW-Authenticate":
                              f'Bearer realm="http://{host}:{port}/token",service="mini"'})
        return False

    def _route(self, head: bool = False) -> None:
        reg = self.server.reg
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        with reg.lock:
            reg.requests.append((self.command, self.path))
        if path == "/token":
            return self._token()
        if not self._authorized():
            return None
        if path in ("/v2/", "/v2"):
            return self._send(200, b"{}", {"Content-Type": "application/json"}, head)
        parts = path[len("/v2/"):].split("/")
        if "manifests" in parts:
            i = parts.index("manifests")
            return self._manifest("/".join(parts[:i]), parts[i + 1], head)
        if "blobs" in parts and "uploads" in parts:
            i = parts.index("blobs")
            return self._upload("/".join(parts[:i]), parts[i + 2] if len(parts) > i + 2 else "", query)
        if "blobs" in parts:
            i = parts.index("blobs")
            return self._blob("/".join(parts[:i]), parts[i + 1], head)
        return self._error(404, "NOT_FOUND")

    def _token(self) -> None:
        reg = self.server.reg
        got = self.headers.get("Authorization", "")
        if reg.users and not any(
                got == "Basic " + base64.b64encode(f"{u}:{p}".encode()).decode() for u, p in reg.users.items()):
            return self._send(401)
        tok = secrets.token_hex(8)
        reg.tokens.add(tok)
        return self._send(200, json.dumps({"token": tok}).encode(), {"Content-Type": "application/json"})

    def _manifest(self, repo: str, ref: str, head: bool) -> None:
        reg = self.server.reg
        if self.command == "PUT":
            data = self._body()
            mt = self.headers.get("Content-Type", "")
            dg = digest_of(data)
            with reg.lock:
                reg.manifests[(repo, dg)] = (mt, data)
                if not ref.startswith("sha256:"):
                    reg.tags[(repo, ref)] = dg
            return self._send(201, b"", {"Docker-Content-Digest": dg, "Location": f"/v2/{repo}/manifests/{dg}"})
        dg = ref if ref.startswith("sha256:") else reg.tags.get((repo, ref))
        entry = reg.manifests.get((repo, dg)) if dg else None
        if entry is None:
            return self._error(404, "MANIFEST_UNKNOWN")
        mt, data = entry
        data = reg.serve_manifest_as.get(dg, data)
        return self._send(200, data, {"Content-Type": mt, "Docker-Content-Digest": dg}, head)

    def _blob(self, repo: str, dg: str, head: bool) -> None:
        reg = self.server.reg
        data = reg.blobs.get(dg)
        if data is None or repo not in reg.blob_repos.get(dg, set()):
            return self._error(404, "BLOB_UNKNOWN")
        if dg in reg.corrupt:
            data = bytes([data[0] ^ 1]) + data[1:]
        if dg in reg.truncate:
            return self._send(200, data[: len(data) // 2], {"Docker-Content-Digest": dg}, head)
        return self._send(200, data, {"Docker-Content-Digest": dg}, head)

    def _upload(self, repo: str, uid: str, query: dict) -> None:
        reg = self.server.reg
        if self.command == "POST":
            mount, frm = query.get("mount", [None])[0], query.get("from", [None])[0]
            if mount and frm and repo and frm in reg.blob_repos.get(mount, set()):
                with reg.lock:
                    reg.blob_repos[mount].add(repo)
                return self._send(201, b"", {"Location": f"/v2/{repo}/blobs/{mount}", "Docker-Content-Digest": mount})
            uid = secrets.token_hex(6)
            return self._send(202, b"", {"Location": f"/v2/{repo}/blobs/uploads/{uid}?_state=x",
                                         "Docker-Upload-UUID": uid})
        if self.command == "PUT":
            data = self._body()
            want = query.get("digest", [""])[0]
            if digest_of(data) != want:
                return self._error(400, "DIGEST_INVALID")
            reg.add_blob(repo, data)
            return self._send(201, b"", {"Location": f"/v2/{repo}/blobs/{want}", "Docker-Content-Digest": want})
        return self._error(405, "UNSUPPORTED")

    def do_GET(self) -> None:
        self._route()

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_PUT(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class MiniRegistry:
    def __init__(self, *, auth: str | None = None, users: dict[str, str] | None = None):
        self.auth, self.users = auth, dict(users or {})
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        self.manifests: dict[tuple[str, str], tuple[str, bytes]] = {}
        self.tags: dict[tuple[str, str], str] = {}
        self.blobs: dict[str, bytes] = {}
        self.blob_repos: dict[str, set[str]] = {}
        self.tokens: set[str] = set()
        self.corrupt: set[str] = set()
        self.truncate: set[str] = set()
        self.serve_manifest_as: dict[str, bytes] = {}
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.reg = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def host(self) -> str:
        h, p = self.httpd.server_address[:2]
        return f"{h}:{p}"

    def __enter__(self) -> MiniRegistry:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- seeding
    def add_blob(self, repo: str, data: bytes) -> str:
        dg = digest_of(data)
        with self.lock:
            self.blobs[dg] = data
            self.blob_repos.setdefault(dg, set()).add(repo)
        return dg

    def add_manifest(self, repo: str, tag: str | None, doc: dict, media_type: str) -> tuple[str, int]:
        data = json.dumps(doc, indent=3).encode()
        dg = digest_of(data)
        with self.lock:
            self.manifests[(repo, dg)] = (media_type, data)
            if tag:
                self.tags[(repo, tag)] = dg
        return dg, len(data)

    def add_image(self, repo: str, tag: str | None, files: dict[str, bytes], *, arch: str = "amd64",
                  shared: bytes | None = None) -> tuple[str, int]:
        """An image manifest: optional shared base layer + one layer holding ``files``."""
        layers = []
        for content in ([shared] if shared is not None else []) + [make_layer(files)]:
            layers.append({"mediaType": DOCKER_LAYER, "size": len(content), "digest": self.add_blob(repo, content)})
        config = json.dumps({"architecture": arch, "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        doc = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
               "config": {"mediaType": DOCKER_CONFIG, "size": len(config), "digest": self.add_blob(repo, config)},
               "layers": layers}
        return self.add_manifest(repo, tag, doc, DOCKER_MANIFEST)

    def add_list(self, repo: str, tag: str, entries: list[tuple[str, int, str]]) -> tuple[str, int]:
        doc = {"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [
            {"mediaType": DOCKER_MANIFEST, "digest": dg, "size": size,
             "platform": {"architecture": arch, "os": "linux"}} for dg, size, arch in entries]}
        return self.add_manifest(repo, tag, doc, DOCKER_LIST)


def make_layer(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            t.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as g:
        g.write(raw.getvalue())
    return out.getvalue()
