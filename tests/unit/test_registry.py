"""netship.registry against a real in-memory registry on 127.0.0.1 (tests/support/miniregistry)."""

from __future__ import annotations

import base64
import io
import json

import pytest

from netship.digest import Digest, sha256_bytes
from netship.errors import RegistryError
from netship.registry import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    Descriptor,
    Manifest,
    Registry,
    is_loopback_host,
    load_docker_auths,
)
from tests.support.miniregistry import MiniRegistry


@pytest.fixture
def mini():
    with MiniRegistry() as reg:
        yield reg


def docker_config(tmp_path, host, user="alice", password="s3cret-pw"):
    p = tmp_path / "config.json"
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    p.write_text(json.dumps({"auths": {f"http://{host}": {"auth": auth}}}))
    return p


@pytest.mark.parametrize("host,loop", [
    ("127.0.0.1:5000", True), ("127.9.9.9", True), ("localhost:5000", True), ("[::1]:5000", True),
    ("::1", True), ("registry.example.com:5000", False), ("10.0.0.1:5000", False), ("localhost.evil.com", False),
])
def test_loopback_detection(host, loop):
    assert is_loopback_host(host) is loop


def test_plain_http_only_for_loopback():
    assert Registry("127.0.0.1:5000").base == "http://127.0.0.1:5000"
    assert Registry("registry.example.com").base == "https://registry.example.com"
    # asking for http on a remote host does not downgrade it
    assert Registry("registry.example.com", insecure_http=True).base.startswith("https://")
    assert Registry("registry.example.com").session.verify is True


def test_get_manifest_by_tag_and_digest(mini):
    dg, size = mini.add_image("team/a", "v1", {"f": b"hello"})
    reg = Registry(mini.host)
    m = reg.get_manifest("team/a", "v1")
    assert str(m.digest) == dg and m.size == size and m.media_type == DOCKER_MANIFEST
    assert reg.get_manifest("team/a", Digest.parse(dg)).data == m.data
    assert [d.media_type for d in m.children()][0].endswith("container.image.v1+json")
    head = reg.head_manifest("team/a", "v1")
    assert head is not None and str(head.digest) == dg
    assert reg.head_manifest("team/a", "nope") is None
    with pytest.raises(RegistryError, match="team/a:nope: manifest not found"):
        reg.get_manifest("team/a", "nope")


def test_manifest_served_under_the_wrong_digest_is_refused(mini):
    dg, _ = mini.add_image("a", "v1", {"f": b"x"})
    mini.serve_manifest_as[dg] = b'{"schemaVersion":2,"mediaType":"%s","config":{},"layers":[]}' % DOCKER_MANIFEST.encode()
    with pytest.raises(RegistryError, match="served manifest has digest"):
        Registry(mini.host).get_manifest("a", Digest.parse(dg))


def test_blob_stream_checks_digest_and_size(mini):
    data = b"layer bytes" * 1000
    dg = Digest.parse(mini.add_blob("a", data))
    reg = Registry(mini.host)
    assert reg.read_blob("a", dg, len(data)) == data
    mini.corrupt.add(str(dg))
    with pytest.raises(RegistryError, match="digest mismatch"):
        reg.read_blob("a", dg, len(data))
    mini.corrupt.clear()
    mini.truncate.add(str(dg))
    with pytest.raises(RegistryError, match=f"has {len(data) // 2} bytes, expected {len(data)}"):
        reg.read_blob("a", dg, len(data))
    with pytest.raises(RegistryError, match="blob not found"):
        reg.read_blob("other", dg)


def test_push_blob_skips_existing_mounts_then_uploads(mini):
    reg = Registry(mini.host)
    data = b"shared layer" * 500
    desc = Descriptor("application/octet-stream", sha256_bytes(data), len(data))
    opened = []

    def opener():
        opened.append(1)
        return io.BytesIO(data)

    assert reg.push_blob("one", desc, opener) == "uploaded"
    assert mini.blobs[str(desc.digest)] == data
    assert reg.push_blob("one", desc, opener) == "exists"
    assert reg.push_blob("two", desc, opener, mount_from="one") == "mounted"
    assert len(opened) == 1  # neither the skip nor the mount read the bytes
    uploads = [r for r in mini.requests if r[0] == "PUT"]
    assert len(uploads) == 1


def test_upload_of_wrong_bytes_is_rejected(mini):
    reg = Registry(mini.host)
    desc = Descriptor("application/octet-stream", sha256_bytes(b"right"), 5)
    with pytest.raises(RegistryError, match="HTTP 400.*DIGEST_INVALID"):
        reg.push_blob("x", desc, lambda: io.BytesIO(b"wrong"))


def test_put_manifest_keeps_bytes_and_digest(mini):
    reg = Registry(mini.host)
    doc = {"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": []}
    data = json.dumps(doc, indent=7).encode()  # unusual formatting must survive byte for byte
    m = Manifest.parse(data, None, "test")
    assert reg.put_manifest("x", "v1", m) == sha256_bytes(data)
    assert reg.get_manifest("x", "v1").data == data


def test_bearer_token_auth_with_docker_config_credentials(tmp_path):
    with MiniRegistry(auth="bearer", users={"alice": "s3cret-pw"}) as mini:
        mini.add_image("p/a", "v1", {"f": b"1"})
        reg = Registry(mini.host, docker_config=docker_config(tmp_path, mini.host))
        assert reg.get_manifest("p/a", "v1").size > 0
        assert any(path.startswith("/token") for _m, path in mini.requests)
        # anonymous is refused by the token endpoint: a clear error without any secret
        anon = Registry(mini.host)
        with pytest.raises(RegistryError, match="token request refused") as e:
            anon.get_manifest("p/a", "v1")
        assert "s3cret" not in str(e.value)


def test_basic_auth_and_no_secret_in_messages_or_repr(tmp_path):
    with MiniRegistry(auth="basic", users={"alice": "s3cret-pw"}) as mini:
        mini.add_image("p/a", "v1", {"f": b"1"})
        good = Registry(mini.host, docker_config=docker_config(tmp_path, mini.host))
        assert good.get_manifest("p/a", "v1").size > 0
        assert "s3cret" not in repr(good)
        bad = Registry(mini.host, docker_config=docker_config(tmp_path, mini.host, password="wrong-pw"))
        with pytest.raises(RegistryError, match="HTTP 401") as e:
            bad.get_manifest("p/a", "v1")
        assert "wrong-pw" not in str(e.value)


def test_docker_config_parsing(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"auths": {
        "https://reg.example.com/v1/": {"auth": base64.b64encode(b"u:p:with:colons").decode()},
        "other:5000": {"username": "v", "password": "w"},
        "broken": {"auth": "%%%"},
    }}))
    assert load_docker_auths(p) == {"reg.example.com": ("u", "p:with:colons"), "other:5000": ("v", "w")}
    assert load_docker_auths(tmp_path / "missing.json") == {}
    (tmp_path / "bad.json").write_text("{not json")
    assert load_docker_auths(tmp_path / "bad.json") == {}


def test_unreachable_registry_is_named():
    with pytest.raises(RegistryError, match=r"http://127\.0\.0\.1:9: registry unreachable"):
        Registry("127.0.0.1:9", timeout=2).ping()


def test_manifest_parse_by_shape_and_unknown_type():
    oci = Manifest.parse(b'{"schemaVersion":2,"config":{},"layers":[]}', None, "t")
    assert oci.media_type.endswith("oci.image.manifest.v1+json")
    idx = Manifest.parse(b'{"schemaVersion":2,"manifests":[]}', None, "t")
    assert idx.is_index
    with pytest.raises(RegistryError, match="unsupported manifest media type"):
        Manifest.parse(b'{"mediaType":"application/vnd.docker.distribution.manifest.v1+json"}', None, "t")
    with pytest.raises(RegistryError, match="not JSON"):
        Manifest.parse(b"<html>", None, "t")
