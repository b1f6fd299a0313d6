"""The one registry HTTP API (OCI distribution) client of the project.

- manifests: get / head / put (Docker v2 schema 2, manifest lists, OCI index and manifest);
- blobs: streamed with their digest and size checked as they arrive; pushed with a HEAD
  first (skip what the registry has), a cross-repository mount when the blob is known to
  live in another repository of the same registry, else a monolithic upload;
- auth: anonymous, Bearer token (``WWW-Authenticate: Bearer realm=...``) and Basic, with
  credentials from ``~/.docker/config.json`` (``auths.HOST.auth``); credentials are never
  logged nor put into error messages;
- transport: plain http only for loopback hosts (127.0.0.0/8, ::1, localhost), https
  with TLS verification (optionally against ``ca_bundle``) everywhere else.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urljoin

import requests

from .digest import CHUNK, Digest, sha256_bytes
from .errors import RegistryError

log = logging.getLogger("netship.registry")

# Media types
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
IMAGE_MANIFESTS = (DOCKER_MANIFEST, OCI_MANIFEST)
INDEXES = (DOCKER_LIST, OCI_INDEX)
ALL_MANIFESTS = (*INDEXES, *IMAGE_MANIFESTS)
ACCEPT = ", ".join(ALL_MANIFESTS)
MAX_MANIFEST = 4 << 20  # distribution's own limit


def is_loopback_host(host: str) -> bool:
    """``host`` may carry a port (``127.0.0.1:5000``, ``[::1]:5000``, ``localhost``)."""
    h = host.strip()
    if h.startswith("["):
        h = h[1:].split("]", 1)[0]
    elif h.count(":") == 1:
        h = h.split(":", 1)[0]
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    platform: Mapping[str, Any] | None = None
    annotations: Mapping[str, str] | None = None

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], where: str) -> Descriptor:
        try:
            return cls(
                media_type=str(raw.get("mediaType", "")),
                digest=Digest.parse(str(raw["digest"]), where),
                size=int(raw["size"]),
                platform=raw.get("platform"),
                annotations=raw.get("annotations"),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise RegistryError(f"{where}: malformed descriptor: {e}") from None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        if self.platform:
            out["platform"] = dict(self.platform)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @property
    def platform_string(self) -> str | None:
        if not self.platform:
            return None
        p = self.platform
        s = f"{p.get('os', 'linux')}/{p.get('architecture', '')}"
        return s + (f"/{p['variant']}" if p.get("variant") else "")


@dataclass(frozen=True)
class Manifest:
    """A manifest exactly as the registry served it (the bytes are what the digest covers)."""

    media_type: str
    digest: Digest
    data: bytes = field(repr=False)

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.data)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEXES

    def descriptor(self, annotations: Mapping[str, str] | None = None) -> Descriptor:
        return Descriptor(self.media_type, self.digest, self.size, None, annotations)

    def children(self) -> list[Descriptor]:
        """Index: its manifests. Image manifest: its config then its layers."""
        raw = self.json
        where = f"manifest {self.digest}"
        if self.is_index:
            return [Descriptor.from_json(m, where) for m in raw.get("manifests", [])]
        return [Descriptor.from_json(raw["config"], where)] + [
            Descriptor.from_json(layer, where) for layer in raw.get("layers", [])
        ]

    @classmethod
    def parse(cls, data: bytes, media_type: str | None, where: str) -> Manifest:
        try:
            raw = json.loads(data)
        except ValueError as e:
            raise RegistryError(f"{where}: manifest is not JSON: {e}") from None
        mt = raw.get("mediaType") or media_type or ""
        if mt not in ALL_MANIFESTS:
            # OCI manifests may omit mediaType: tell them apart by shape.
            mt = OCI_INDEX if "manifests" in raw else OCI_MANIFEST if "layers" in raw else mt
        if mt not in ALL_MANIFESTS:
            raise RegistryError(f"{where}: unsupported manifest media type {mt!r}")
        return cls(mt, sha256_bytes(data), data)


# --- credentials -----------------------------------------------------------------------

def load_docker_auths(config_path: Path | None) -> dict[str, tuple[str, str]]:
    """host -> (user, password) from a docker config.json; {} when absent or unreadable."""
    if config_path is None or not config_path.is_file():
        return {}
    try:
        raw = json.loads(config_path.read_text())
    except (OSError, ValueError):
        log.debug("ignoring unreadable docker config %s", config_path)
        return {}
    out: dict[str, tuple[str, str]] = {}
    for key, entry in (raw.get("auths") or {}).items():
        host = re.sub(r"^https?://", "", str(key)).split("/", 1)[0]
        if not isinstance(entry, Mapping):
            continue
        user, password = entry.get("username"), entry.get("password")
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                continue
        if user and password is not None:
            out[host] = (str(user), str(password))
    return out


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}
    return scheme.lower(), params


# --- the client ------------------------------------------------------------------------

class Registry:
    """Client for one registry host (``host[:port]``)."""

    def __init__(
        self,
        host: str,
        *,
        ca_bundle: Path | None = None,
        timeout: float = 30.0,
        docker_config: Path | None = None,
        insecure_http: bool | None = None,
        session: requests.Session | None = None,
    ):
        self.host = host.strip().rstrip("/")
        loop = is_loopback_host(self.host)
        use_http = loop if insecure_http is None else (insecure_http and loop)
        self.base = f"{'http' if use_http else 'https'}://{self.host}"
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.verify = str(ca_bundle) if ca_bundle else True
        self.session.trust_env = False  # never route through a proxy from the environment
        auths = load_docker_auths(docker_config)
        # Docker Hub: `docker login` stores the key https://index.docker.io/v1/, the API is registry-1.docker.io
        hub = ("index.docker.io", "docker.io", "registry-1.docker.io")
        self._creds = auths.get(self.host) or (
            next((auths[h] for h in hub if h in auths), None) if self.host in hub else None)
        self._tokens: dict[str, str] = {}  # scope -> bearer token
        self._basic = False

    def __repr__(self) -> str:  # no credentials
        return f"Registry({self.base})"

    # -- transport ---------------------------------------------------------------
    def _url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self.base}{path}"

    def _auth_headers(self, scope: str) -> dict[str, str]:
        if scope in self._tokens:
            return {"Authorization": f"Bearer {self._tokens[scope]}"}
        if self._basic and self._creds:
            raw = base64.b64encode(f"{self._creds[0]}:{self._creds[1]}".encode()).decode()
            return {"Authorization": f"Basic {raw}"}
        return {}

    def _authenticate(self, resp: requests.Response, scope: str) -> bool:
        """Answer a 401 challenge; True when a retry may succeed."""
        scheme, params = _parse_challenge(resp.headers.get("WWW-Authenticate", ""))
        if scheme == "basic":
            if self._creds is None or self._basic:
                return False
            self._basic = True
            return True
        if scheme == "bearer" and params.get("realm"):
            if scope in self._tokens:
                return False  # the token we had was refused
            query = {"service": params.get("service", "")} if params.get("service") else {}
            wanted = params.get("scope") or scope
            if wanted:
                query["scope"] = wanted
            auth = self._creds if self._creds else None
            realm = params["realm"]
            try:
                r = self.session.get(realm, params=query, auth=auth, timeout=self.timeout)
            except requests.RequestException as e:
                raise RegistryError(f"{realm}: token request failed: {type(e).__name__}") from None
            if r.status_code != 200:
                raise RegistryError(f"{realm}: token request refused (HTTP {r.status_code})")
            body = r.json()
            token = body.get("token") or body.get("access_token")
            if not token:
                raise RegistryError(f"{realm}: token response without a token")
            self._tokens[scope] = token
            return True
        return False

    def request(
        self,
        method: str,
        path: str,
        *,
        scope: str,
        headers: Mapping[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
        stream: bool = False,
        data: Any = None,
        allow_redirects: bool = True,
        rewind: Callable[[], Any] | None = None,
    ) -> requests.Response:
        url = self._url(path)
        for attempt in range(3):
            hdrs = {**self._auth_headers(scope), **(headers or {})}
            body = rewind() if (rewind is not None and attempt > 0) else data
            try:
                resp = self.session.request(
                    method, url, headers=hdrs, data=body, stream=stream,
                    timeout=self.timeout, allow_redirects=allow_redirects,
                )
            except requests.exceptions.SSLError as e:
                raise RegistryError(f"{url}: TLS verification failed ({type(e).__name__}); "
                                    "set ca_bundle for a private CA") from None
            except requests.RequestException as e:
                raise RegistryError(f"{self.base}: registry unreachable ({type(e).__name__}: "
                                    f"{str(e).splitlines()[0][:200]})") from None
            if resp.status_code == 401 and attempt < 2 and self._authenticate(resp, scope):
                resp.close()
                continue
            if resp.status_code in ok:
                return resp
            detail = _error_detail(resp)
            resp.close()
            raise RegistryError(f"{method} {url}: HTTP {resp.status_code}{detail}")
        raise RegistryError(f"{method} {url}: authentication failed")  # pragma: no cover

    # -- manifests -------------------------------------------------------------------
    def ping(self) -> None:
        self.request("GET", "/v2/", scope="", ok=(200,))

    def get_manifest(self, repo: str, reference: str | Digest,
                     accept: str = ACCEPT) -> Manifest:
        ref = str(reference)
        where = f"{self.host}/{repo}@{ref}" if ":" in ref else f"{self.host}/{repo}:{ref}"
        resp = self.request("GET", f"/v2/{repo}/manifests/{ref}", scope=_pull(repo),
                            headers={"Accept": accept}, ok=(200, 404))
        if resp.status_code == 404:
            raise RegistryError(f"{where}: manifest not found")
        data = resp.content
        if len(data) > MAX_MANIFEST:
            raise RegistryError(f"{where}: manifest larger than {MAX_MANIFEST} bytes")
        m = Manifest.parse(data, resp.headers.get("Content-Type"), where)
        if isinstance(reference, Digest) or ref.startswith("sha256:"):
            want = reference if isinstance(reference, Digest) else Digest.parse(ref, where)
            if m.digest != want:
                raise RegistryError(f"{where}: served manifest has digest {m.digest}")
        return m

    def head_manifest(self, repo: str, reference: str | Digest) -> Descriptor | None:
        resp = self.request("HEAD", f"/v2/{repo}/manifests/{reference}", scope=_pull(repo),
                            headers={"Accept": ACCEPT}, ok=(200, 404))
        if resp.status_code == 404:
            return None
        dg = resp.headers.get("Docker-Content-Digest")
        if not dg:  # some registries omit it on HEAD: fall back to GET
            m = self.get_manifest(repo, reference)
            return m.descriptor()
        return Descriptor(resp.headers.get("Content-Type", ""), Digest.parse(dg),
                          int(resp.headers.get("Content-Length", "0")))

    def put_manifest(self, repo: str, reference: str, manifest: Manifest) -> Digest:
        resp = self.request("PUT", f"/v2/{repo}/manifests/{reference}", scope=_push(repo),
                            headers={"Content-Type": manifest.media_type}, data=manifest.data,
                            ok=(200, 201, 202))
        got = resp.headers.get("Docker-Content-Digest")
        if got and Digest.parse(got) != manifest.digest:
            raise RegistryError(f"{self.host}/{repo}:{reference}: registry stored digest {got}, "
                                f"expected {manifest.digest}")
        return manifest.digest

    # -- blobs -----------------------------------------------------------------------
    def blob_exists(self, repo: str, digest: Digest) -> bool:
        resp = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", scope=_pull(repo), ok=(200, 404))
        return resp.status_code == 200

    @contextlib.contextmanager
    def open_blob(self, repo: str, digest: Digest, size: int | None = None) -> Iterator[BlobReader]:
        """A file-like object over the blob; its digest and size are checked at EOF."""
        resp = self.request("GET", f"/v2/{repo}/blobs/{digest}", scope=_pull(repo),
                            ok=(200, 404), stream=True)
        try:
            if resp.status_code == 404:
                raise RegistryError(f"{self.host}/{repo}@{digest}: blob not found")
            yield BlobReader(resp.raw, digest, size, f"{self.host}/{repo}@{digest}")
        finally:
            resp.close()

    def read_blob(self, repo: str, digest: Digest, size: int | None = None) -> bytes:
        """Small blobs only (configs)."""
        with self.open_blob(repo, digest, size) as r:
            data = r.read()
            r.verify()
        return data

    def push_blob(
        self,
        repo: str,
        desc: Descriptor,
        opener: Callable[[], BinaryIO],
        *,
        mount_from: str | None = None,
    ) -> str:
        """Push one blob. Returns "exists", "mounted" or "uploaded".

        ``opener`` returns a fresh readable stream of the blob's bytes (called at most twice:
        an auth retry re-opens it). The upload is a single streamed PUT.
        """
        if self.blob_exists(repo, desc.digest):
            return "exists"
        scope = _push(repo) if not mount_from else f"{_push(repo)} {_pull(mount_from)}"
        path = f"/v2/{repo}/blobs/uploads/"
        if mount_from and mount_from != repo:
            resp = self.request("POST", f"{path}?mount={desc.digest}&from={mount_from}",
                                scope=scope, ok=(201, 202))
            if resp.status_code == 201:
                return "mounted"
        else:
            resp = self.request("POST", path, scope=scope, ok=(202,))
        location = resp.headers.get("Location")
        if not location:
            raise RegistryError(f"POST {self._url(path)}: no Location in the answer")
        upload = urljoin(self._url(path), location)
        sep = "&" if "?" in upload else "?"
        streams: list[BinaryIO] = []

        def body() -> _SizedStream:
            f = opener()
            streams.append(f)
            return _SizedStream(f, desc.size)

        try:
            self.request(
                "PUT", f"{upload}{sep}digest={desc.digest}", scope=scope,
                headers={"Content-Type": "application/octet-stream"},
                data=body(), rewind=body, ok=(201, 204),
            )
        finally:
            for f in streams:
                f.close()
        return "uploaded"


class BlobReader:
    """Reads a blob stream, hashing as it goes; ``verify()`` raises on a digest/size mismatch."""

    def __init__(self, raw: BinaryIO, digest: Digest, size: int | None, where: str):
        self._raw, self.digest, self.size, self.where = raw, digest, size, where
        self._hasher = hashlib.new(digest.algorithm)
        self.count = 0
        self._eof = False

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = []
            while chunk := self.read(CHUNK):
                parts.append(chunk)
            return b"".join(parts)
        data = self._raw.read(n)
        if not data:
            self._eof = True
        self._hasher.update(data)
        self.count += len(data)
        if self.size is not None and self.count > self.size:
            raise RegistryError(f"{self.where}: blob larger than its descriptor's {self.size} bytes")
        return data

    def verify(self) -> None:
        if not self._eof:
            # drain: a longer stream than announced is an error too
            if self._raw.read(1):
                raise RegistryError(f"{self.where}: blob larger than its descriptor's {self.size} bytes")
        if self.size is not None and self.count != self.size:
            raise RegistryError(f"{self.where}: blob has {self.count} bytes, expected {self.size}")
        got = self._hasher.hexdigest()
        if got != self.digest.hex:
            raise RegistryError(f"{self.where}: blob digest mismatch: got {self.digest.algorithm}:{got}")


class _SizedStream:
    """A request body of known length, read in chunks (requests sends Content-Length)."""

    def __init__(self, f: BinaryIO, size: int):
        self._f, self._size = f, size

    def __len__(self) -> int:
        return self._size

    def read(self, n: int = CHUNK) -> bytes:
        return self._f.read(n if n and n > 0 else CHUNK)

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self._f.read(CHUNK):
            yield chunk


def _pull(repo: str) -> str:
    return f"repository:{repo}:pull"


def _push(repo: str) -> str:
    return f"repository:{repo}:pull,push"


def _error_detail(resp: requests.Response) -> str:
    try:
        errors = resp.json().get("errors") or []
        if errors:
            e = errors[0]
            return f": {e.get('code', '')} {e.get('message', '')}".rstrip()
    except (ValueError, AttributeError):
        pass
    return ""


def client_for(host: str, *, ca_bundle: Path | None = None, timeout: float = 30.0,
               docker_config: Path | None = None) -> Registry:
    """The usual client: credentials from ``~/.docker/config.json`` unless told otherwise."""
    cfg = docker_config if docker_config is not None else Path.home() / ".docker" / "config.json"
    return Registry(host, ca_bundle=ca_bundle, timeout=timeout, docker_config=cfg)


@dataclass
class TransferStats:
    """What pushing blobs into a registry did: counts by outcome and bytes sent."""

    uploaded: int = 0
    mounted: int = 0
    existing: int = 0
    uploaded_bytes: int = 0

    def add(self, outcome: str, size: int) -> None:
        if outcome == "uploaded":
            self.uploaded += 1
            self.uploaded_bytes += size
        elif outcome == "mounted":
            self.mounted += 1
        else:
            self.existing += 1

    def to_json(self) -> dict[str, int]:
        return {"uploaded": self.uploaded, "mounted": self.mounted, "existing": self.existing,
                "uploaded_bytes": self.uploaded_bytes}


class BlobTransfer:
    """Pushes blobs into one registry, mounting a blob that this transfer already put in
    another repository there instead of uploading it again (mirror and push-bundle)."""

    def __init__(self, target: Registry):
        self.target = target
        self.homes: dict[Digest, str] = {}  # blob -> a repository of target that has it

    def push(self, repo: str, desc: Descriptor, opener: Callable[[], BinaryIO],
             stats: TransferStats) -> str:
        home = self.homes.get(desc.digest)
        outcome = self.target.push_blob(repo, desc, opener, mount_from=home if home != repo else None)
        self.homes.setdefault(desc.digest, repo)
        stats.add(outcome, desc.size)
        return outcome

    def known(self, repo: str, desc: Descriptor, stats: TransferStats) -> None:
        """Record a blob the target holds already (its manifest is there)."""
        self.homes.setdefault(desc.digest, repo)
        stats.add("exists", desc.size)
