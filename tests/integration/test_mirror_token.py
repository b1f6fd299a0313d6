"""``mirror`` into a registry that wants Bearer tokens (Docker Hub, quay, ghcr style).

The real Distribution registry runs with ``auth: token``; a small token service on 127.0.0.1
(a real HTTP server) checks the user's basic credentials and signs RS256 JWTs with a
self-signed certificate that the registry trusts (``rootcertbundle``). netship gets the
challenge, asks the realm for a token for exactly the scope it needs, and copies.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from netship import mirror as mm
from netship.arch import Arch
from netship.errors import RegistryError
from netship.settings import Settings
from tests.integration.test_mirror import _images, source  # noqa: F401 - the seeded source fixture
from tests.support.loopback_registry import LoopbackRegistry

ROOT = Path(__file__).resolve().parents[2]
SERVICE, ISSUER = "netship-test-registry", "netship-test-issuer"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenService:
    def __init__(self, workdir: Path, users: dict[str, str]):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "netship test token signer")])
        now = dt.datetime.now(dt.UTC)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.bundle = workdir / "token-ca.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.users = users
        self.requests: list[tuple[str | None, list[str]]] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                q = parse_qs(urlparse(self.path).query)
                user = None
                auth = self.headers.get("Authorization", "")
                if auth.startswith("Basic "):
                    u, _, p = base64.b64decode(auth[6:]).decode().partition(":")
                    if service.users.get(u) != p:
                        self.send_response(401)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    user = u
                scopes = [s for v in q.get("scope", []) for s in v.split(" ") if s]
                service.requests.append((user, scopes))
                access = []
                for s in scopes:
                    kind, name, actions = s.split(":")
                    allowed = actions.split(",") if user else [a for a in actions.split(",") if a == "pull"]
                    access.append({"type": kind, "name": name, "actions": allowed})
                body = json.dumps({"token": service.sign(user or "", access), "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def sign(self, subject: str, access: list) -> str:
        der = self.cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": subject, "aud": SERVICE, "exp": now + 300, "nbf": now - 60,
                  "iat": now - 60, "jti": secrets.token_hex(8), "access": access}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        sig = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64(sig)}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def token_target(tmp_path):
    password = "pw-" + secrets.token_hex(6)
    tokens = TokenService(tmp_path, {"carol": password})
    auth = (f"auth: {{token: {{realm: '{tokens.realm}', service: {SERVICE}, issuer: {ISSUER}, "
            f"rootcertbundle: {tokens.bundle}}}}}")
    reg = LoopbackRegistry(tmp_path / "token-registry", extra_config=auth).start()
    yield reg, tokens, password
    reg.wipe()
    tokens.close()


def test_mirror_into_a_token_auth_registry(source, token_target, tmp_path, capfd, caplog):  # noqa: F811
    src, seeded = source
    target, tokens, password = token_target
    images = _images(tmp_path, src.host)
    steps = mm.plan_mirror(images, (Arch.AMD64, Arch.S390X), target.host, names=["calico-node", "calico-cni"])
    cfg = tmp_path / "docker-config.json"
    # anonymous tokens only grant pull: pushing is refused with a clear error
    cfg.write_text("{}")
    with pytest.raises(RegistryError, match="HTTP 401"):
        mm.mirror(steps, mm.default_clients(Settings(docker_config=cfg)))
    cfg.write_text(json.dumps({"auths": {target.host: {"auth": base64.b64encode(f"carol:{password}".encode()).decode()}}}))
    results = mm.mirror(steps, mm.default_clients(Settings(docker_config=cfg)))
    assert [r.unchanged for r in results] == [False, False]
    assert results[1].blobs.mounted >= 1  # the shared base layer, mounted across repos with a token
    # tokens were asked for the repositories' scopes, by carol
    users = {u for u, _s in tokens.requests if u}
    scopes = {s for _u, ss in tokens.requests for s in ss}
    assert users == {"carol"}
    assert {"repository:calico/node:pull,push", "repository:calico/cni:pull,push"} <= scopes
    client = target.client(cfg)
    index = client.get_manifest("calico/node", "v3.31.7")
    assert [d.platform_string for d in index.children()] == ["linux/amd64", "linux/s390x"]
    assert str(client.get_manifest("calico/node", "v3.31.7-s390x").digest) == seeded["calico/node"].arch_digests[Arch.S390X]
    out, err = capfd.readouterr()
    assert password not in out + err + caplog.text
    # rerun: nothing to do
    again = mm.mirror(steps, mm.default_clients(Settings(docker_config=cfg)))
    assert all(r.unchanged for r in again)
