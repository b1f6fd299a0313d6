"""fetch against a real loopback HTTP server: cache, tree, and every fault of the issue.

Each fault test ends with either verified content or a clear error, and then checks that
nothing unverified sits where the pipeline would use it (blob store and tree).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from netship.arch import Arch
from netship.catalog import load_catalog
from netship.digest import sha256_file
from netship.download import Downloader
from netship.errors import ChecksumMismatch, ConfigError, FetchError, UnsafeArchive, WrongArchitecture
from netship.fetch import fetch, tree_path
from netship.progress import PlainProgress
from netship.settings import Settings
from tests.support.httpserver import (
    Chain,
    DropMidBody,
    IgnoreRange,
    LoopbackServer,
    Redirect,
    ServeBytes,
    ShortBody,
    SlowDrip,
    Status,
    WrongRange,
)
from tests.support.upstream import make_elf, make_upstream, mirror_path

CNI = ("cni-plugins", Arch.AMD64)


@pytest.fixture
def env(tmp_path):
    mirror, catalog_dir = tmp_path / "mirror", tmp_path / "catalog"
    up = make_upstream(mirror, catalog_dir)
    with LoopbackServer(mirror) as srv:
        settings = Settings(catalog_dir=catalog_dir, cache_dir=tmp_path / "cache", mirrors=(srv.url,),
                            retries=3, backoff=0.01, timeout=5.0, jobs=4)
        yield SimpleNamespace(up=up, srv=srv, settings=settings, tmp=tmp_path, mirror=mirror)


def select(settings, component=None, arch=None):
    cat = load_catalog(settings.catalog_dir)
    return cat.select([component] if component else None, [arch] if arch else None)


def asset_path(env, component="cni-plugins", arch=Arch.AMD64) -> str:
    """The mirror-relative path the server sees for an asset."""
    return mirror_path(select(env.settings, component, arch)[0].url)


def assert_cache_clean(settings: Settings) -> None:
    """Only verified blobs under sha256/, no temporaries, no half-made trees."""
    blob_dir = settings.blob_dir
    if blob_dir.exists():
        for p in blob_dir.iterdir():
            assert p.is_file(), p
            assert sha256_file(p).hex == p.name, f"unverified bytes at {p}"
    if settings.tree_dir.exists():
        assert not [p for p in settings.tree_dir.rglob(".netship-*")], "temporary tree left behind"


def requests_for(srv, path):
    return [r for r in srv.requests if r[1] == path]


# -- the normal path --------------------------------------------------------------------------

def test_fetch_all_makes_verified_blobs_and_readable_tree(env):
    report = fetch(env.settings, select(env.settings))
    assert len(report.assets) == 26 and all(a.status == "downloaded" for a in report.assets)
    for a in report.assets:
        assert a.blob == env.settings.blob_dir / a.digest.hex and a.blob.is_file()
        assert a.digest.hex == env.up.digests[a.url]
    s = env.settings
    cni = tree_path(s, "cni-plugins", "v1.9.1", "amd64")
    assert sorted(p.name for p in cni.iterdir()) == sorted(
        ["LICENSE", "README.md", "bandwidth", "bridge", "firewall", "host-local", "loopback", "portmap", "tuning"])
    assert (cni / "bridge").stat().st_mode & 0o777 == 0o755
    assert (cni / "README.md").stat().st_mode & 0o777 == 0o644
    # rename from the catalog: flannel-armv7? no: flannel-arm -> flannel
    assert [p.name for p in tree_path(s, "flannel-cni-plugin", "v1.9.1-flannel1", Arch.ARM).iterdir()] == ["flannel"]
    calico = tree_path(s, "calicoctl", "v3.31.7", "arm64") / "calicoctl"
    assert calico.read_bytes()[:4] == b"\x7fELF" and calico.stat().st_mode & 0o777 == 0o755
    assert (tree_path(s, "kube-router", "v2.11.1", "arm") / "kube-router").is_file()
    assert tree_path(s, select(s, "cilium-cli", Arch.ARM64)[0]) == s.tree_dir / "cilium-cli/v0.19.7/arm64"
    assert_cache_clean(s)


def test_second_fetch_makes_no_request(env):
    fetch(env.settings, select(env.settings))
    before = len(env.srv.requests)
    report = fetch(env.settings, select(env.settings))
    assert len(env.srv.requests) == before
    assert report.requests == 0
    assert all(a.status == "cached" and a.source is None for a in report.assets)


def test_verify_replaces_corrupt_blob_and_tree(env):
    s = env.settings
    [asset] = select(s, *CNI)
    first = fetch(s, [asset]).assets[0]
    os.chmod(first.blob, 0o644)
    first.blob.write_bytes(b"bit rot")
    (first.tree / "bridge").write_bytes(b"tampered")
    # without --verify nothing is re-hashed (that is what keeps a warm fetch fast)
    assert fetch(s, [asset]).assets[0].status == "cached"
    fixed = fetch(s, [asset], verify=True).assets[0]
    assert fixed.status == "downloaded" and set(fixed.repaired) == {"blob", "tree"}
    assert sha256_file(fixed.blob).hex == env.up.digests[asset.url]
    assert (fixed.tree / "bridge").read_bytes()[:4] == b"\x7fELF"
    again = fetch(s, [asset], verify=True).assets[0]
    assert again.status == "cached" and again.repaired == ()
    assert_cache_clean(s)


def test_verify_restores_tree_file_when_blob_is_fine(env):
    s = env.settings
    [asset] = select(s, *CNI)
    a = fetch(s, [asset]).assets[0]
    (a.tree / "portmap").unlink()
    (a.tree / "extra").write_text("x")
    fixed = fetch(s, [asset], verify=True).assets[0]
    assert fixed.repaired == ("tree",) and fixed.status == "cached"
    assert (fixed.tree / "portmap").is_file() and not (fixed.tree / "extra").exists()


def test_file_mirror(env):
    s = env.settings.replace(mirrors=(env.mirror.as_uri(),))
    report = fetch(s, select(s, "calicoctl", Arch.ARM64))
    assert report.assets[0].source.startswith("file://") and env.srv.requests == []


# -- faults -------------------------------------------------------------------------------------

def fetch_cni(env, **kw):
    return fetch(env.settings.replace(**kw) if kw else env.settings, select(env.settings, *CNI))


def test_drop_mid_body_resumes_with_range(env):
    path = asset_path(env)
    env.srv.faults[path] = DropMidBody(after=300)
    a = fetch_cni(env).assets[0]
    reqs = requests_for(env.srv, path)
    assert [r[2] for r in reqs] == [None, "bytes=300-"]
    assert a.digest.hex == env.up.digests[a.url]
    assert_cache_clean(env.settings)


def test_short_body_is_retried_and_resumed(env):
    path = asset_path(env)
    env.srv.faults[path] = ShortBody(after=100)
    a = fetch_cni(env).assets[0]
    assert [r[2] for r in requests_for(env.srv, path)] == [None, "bytes=100-"]
    assert sha256_file(a.blob).hex == env.up.digests[a.url]


def test_500_then_success(env):
    path = asset_path(env)
    env.srv.faults[path] = Status(500, times=2)
    report = fetch_cni(env)
    assert len(requests_for(env.srv, path)) == 3 and report.retries == 2
    assert report.assets[0].status == "downloaded"


def test_429_honours_retry_after(env):
    path = asset_path(env)
    env.srv.faults[path] = Status(429, headers={"Retry-After": "0.3"})
    dl = Downloader(env.settings)
    fetch(env.settings, select(env.settings, *CNI), downloader=dl)
    assert len(requests_for(env.srv, path)) == 2
    [event] = dl.retries
    assert "429" in event.reason and event.wait >= 0.3  # backoff alone would be 0.01


def test_404_is_not_retried(env):
    path = asset_path(env)
    env.srv.faults[path] = Status(404, times=None)
    with pytest.raises(FetchError, match=r"cni-plugins/v1.9.1/amd64: could not download from any mirror: .*HTTP 404") as e:
        fetch_cni(env)
    assert e.value.exit_code == 1
    assert len(requests_for(env.srv, path)) == 1
    assert not list(env.settings.blob_dir.glob("*")) if env.settings.blob_dir.exists() else True
    assert not tree_path(env.settings, *CNI[:1], "v1.9.1", "amd64").exists()


def test_retries_are_bounded(env):
    path = asset_path(env)
    env.srv.faults[path] = Status(503, times=None)
    with pytest.raises(FetchError, match=r"HTTP 503 \(after 3 attempts\)"):
        fetch_cni(env, retries=2)
    assert len(requests_for(env.srv, path)) == 3
    assert_cache_clean(env.settings)


def test_slow_drip_completes(env):
    path = asset_path(env)
    env.srv.faults[path] = SlowDrip(chunk=64, delay=0.001)
    a = fetch_cni(env).assets[0]
    assert a.digest.hex == env.up.digests[a.url] and len(requests_for(env.srv, path)) == 1


def test_stalled_body_times_out_and_resumes(env):
    path = asset_path(env)
    env.srv.faults[path] = SlowDrip(chunk=200, delay=2.0)  # 200 bytes, then a stall longer than the timeout
    a = fetch_cni(env, timeout=0.3).assets[0]
    assert [r[2] for r in requests_for(env.srv, path)] == [None, "bytes=200-"]
    assert sha256_file(a.blob).hex == env.up.digests[a.url]


def test_range_ignored_restarts_from_zero(env):
    path = asset_path(env)
    env.srv.faults[path] = Chain(DropMidBody(after=300), IgnoreRange())
    a = fetch_cni(env).assets[0]
    assert [r[2] for r in requests_for(env.srv, path)] == [None, "bytes=300-"]
    assert sha256_file(a.blob).hex == env.up.digests[a.url]  # not 300 bytes + the whole file


def test_wrong_206_range_is_refused(env):
    path = asset_path(env)
    env.srv.faults[path] = Chain(DropMidBody(after=300), WrongRange(shift=-100))
    dl = Downloader(env.settings)
    a = fetch(env.settings, select(env.settings, *CNI), downloader=dl).assets[0]
    # the bad 206 was not spliced in: the partial was dropped and the next attempt started over
    assert [r[2] for r in requests_for(env.srv, path)] == [None, "bytes=300-", None]
    assert any("refused HTTP 206" in e.reason for e in dl.retries)
    assert sha256_file(a.blob).hex == env.up.digests[a.url]


def test_redirect_is_followed(env):
    path = asset_path(env)
    moved = env.mirror / "moved" / "asset.tgz"
    moved.parent.mkdir()
    moved.write_bytes((env.mirror / path).read_bytes())
    env.srv.faults[path] = Redirect("/moved/asset.tgz")
    a = fetch_cni(env).assets[0]
    assert [r[1] for r in env.srv.requests] == [path, "moved/asset.tgz"]
    assert a.digest.hex == env.up.digests[a.url]


def test_wrong_bytes_on_one_mirror_then_next_mirror(env, tmp_path):
    path = asset_path(env)
    with LoopbackServer(env.mirror) as bad:
        bad.faults[path] = ServeBytes(b"evil twin" * 50)
        s = env.settings.replace(mirrors=(bad.url, env.srv.url))
        report = fetch(s, select(s, *CNI))
    a = report.assets[0]
    assert a.source.startswith(env.srv.url)
    assert a.digest.hex == env.up.digests[a.url]
    [rejected] = a.rejected  # reported, in the JSON summary too
    assert rejected.startswith(f"checksum mismatch for cni-plugins/v1.9.1/amd64 from {bad.url}/")
    assert report.to_json()["assets"][0]["rejected_mirrors"] == [rejected]
    assert_cache_clean(s)


def test_wrong_bytes_everywhere_is_a_mismatch_naming_both_digests(env):
    path = asset_path(env)
    evil = b"evil twin" * 50
    env.srv.faults[path] = ServeBytes(evil)
    with pytest.raises(ChecksumMismatch) as e:
        fetch_cni(env)
    msg = str(e.value)
    assert "cni-plugins/v1.9.1/amd64" in msg and env.up.digests[select(env.settings, *CNI)[0].url] in msg
    assert hashlib.sha256(evil).hexdigest() in msg
    assert_cache_clean(env.settings)
    assert not (env.settings.cache_dir / "partial").exists() or not list((env.settings.cache_dir / "partial").iterdir())
    assert not tree_path(env.settings, "cni-plugins", "v1.9.1", "amd64").exists()


def test_partial_from_an_earlier_run_is_resumed(env):
    [asset] = select(env.settings, *CNI)
    data = (env.mirror / mirror_path(asset.url)).read_bytes()
    part = env.settings.cache_dir / "partial" / asset.pin.sha256.hex
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:250])
    fetch(env.settings, [asset])
    assert [r[2] for r in env.srv.requests] == ["bytes=250-"]


def test_corrupt_partial_is_discarded_after_resume_fails(env):
    [asset] = select(env.settings, *CNI)
    part = env.settings.cache_dir / "partial" / asset.pin.sha256.hex
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * 250)
    a = fetch(env.settings, [asset]).assets[0]
    assert [r[2] for r in env.srv.requests] == ["bytes=250-", None]
    assert sha256_file(a.blob).hex == asset.pin.sha256.hex


def test_other_assets_finish_when_one_fails(env):
    path = asset_path(env)
    env.srv.faults[path] = Status(404, times=None)
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch(env.settings, select(env.settings, "cni-plugins"))
    for arch in ("arm64", "arm", "ppc64le", "s390x"):
        assert tree_path(env.settings, "cni-plugins", "v1.9.1", arch).is_dir()


def test_proxy_from_environment_is_used(env, monkeypatch):
    # The loopback server doubles as an HTTP proxy; the mirror's own host does not exist.
    (env.mirror / "mirror.invalid").symlink_to(env.mirror)
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HTTP_PROXY", env.srv.url)
    s = env.settings.replace(mirrors=("http://mirror.invalid",))
    a = fetch(s, select(s, *CNI)).assets[0]
    assert a.source.startswith("http://mirror.invalid/")
    assert env.srv.requests[0][1].startswith("mirror.invalid/github.com/")


# -- pins ---------------------------------------------------------------------------------------

def _unpin(catalog_dir: Path, component: str, arches=None):
    lock = catalog_dir / "pins.lock"
    raw = json.loads(lock.read_text())
    for arch, entry in next(iter(raw["components"][component].values())).items():
        if arches is None or arch in arches:
            entry["sha256"], entry["source"] = None, "unknown"
    lock.write_text(json.dumps(raw))


def test_unknown_pin_is_refused_with_how_to_pin(env):
    _unpin(env.settings.catalog_dir, "flannel")
    with pytest.raises(ConfigError) as e:
        fetch(env.settings, select(env.settings))
    msg = str(e.value)
    assert e.value.exit_code == 2
    assert "pins.lock: no pinned sha256 for 5 asset(s): flannel/v0.28.9/amd64" in msg
    assert "netship pins update --component flannel --version v0.28.9" in msg and "--allow-unpinned" in msg
    assert env.srv.requests == []  # refused before any download


def test_allow_unpinned_checks_upstream_checksum_file(env):
    _unpin(env.settings.catalog_dir, "cni-plugins", ["amd64"])
    [asset] = select(env.settings, *CNI)
    report = fetch(env.settings, [asset], allow_unpinned=True)
    a = report.assets[0]
    assert not a.pinned and report.unpinned == ("cni-plugins/v1.9.1/amd64",)
    assert a.upstream_checksum == "matches upstream cni-plugins-linux-amd64-v1.9.1.tgz.sha256 (sha256)"
    assert a.digest.hex == env.up.digests[asset.url]
    assert [r[1].rsplit("/", 1)[-1] for r in env.srv.requests] == [
        "cni-plugins-linux-amd64-v1.9.1.tgz.sha256", "cni-plugins-linux-amd64-v1.9.1.tgz"]
    assert report.to_json()["unpinned"] == ["cni-plugins/v1.9.1/amd64"]
    assert "UNPINNED" in report.human()[0]
    # cached next time, still reported as unpinned, no request
    n = len(env.srv.requests)
    again = fetch(env.settings, [asset], allow_unpinned=True)
    assert len(env.srv.requests) == n and again.assets[0].status == "cached" and not again.assets[0].pinned


def test_allow_unpinned_refuses_bytes_that_disagree_with_upstream(env):
    _unpin(env.settings.catalog_dir, "cni-plugins", ["amd64"])
    [asset] = select(env.settings, *CNI)
    cs = env.mirror / mirror_path(asset.url + ".sha256")
    cs.write_text(f"{'ab' * 32}  {asset.name}\n")
    with pytest.raises(ChecksumMismatch, match=f"expected sha256 {'ab' * 32}"):
        fetch(env.settings, [asset], allow_unpinned=True)
    assert_cache_clean(env.settings)


def test_allow_unpinned_without_upstream_checksums(env):
    _unpin(env.settings.catalog_dir, "flannel")
    report = fetch(env.settings, select(env.settings, "flannel"), allow_unpinned=True)
    assert {a.upstream_checksum for a in report.assets} == {"upstream publishes none"}
    assert len(report.unpinned) == 5


def test_allow_unpinned_combined_checksum_file_is_read_once(env):
    _unpin(env.settings.catalog_dir, "kube-router")
    fetch(env.settings, select(env.settings, "kube-router"), allow_unpinned=True)
    assert sum(r[1].endswith("/checksums.txt") for r in env.srv.requests) == 1


# -- content checks through fetch ------------------------------------------------------------------

def _replace_asset(env, component, arch, data: bytes):
    """Serve ``data`` as this asset and pin it (so only the content checks can object)."""
    [asset] = select(env.settings, component, arch)
    (env.mirror / mirror_path(asset.url)).write_bytes(data)
    lock = env.settings.catalog_dir / "pins.lock"
    raw = json.loads(lock.read_text())
    raw["components"][component][asset.version][arch.k8s]["sha256"] = hashlib.sha256(data).hexdigest()
    lock.write_text(json.dumps(raw))
    return select(env.settings, component, arch)[0]


def _tgz(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_wrong_arch_binary_in_archive_is_an_error(env):
    asset = _replace_asset(env, "cni-plugins", Arch.AMD64,
                           _tgz([("./bridge", make_elf(Arch.AMD64)), ("./portmap", make_elf(Arch.ARM64))]))
    with pytest.raises(WrongArchitecture, match=r"portmap: ELF header says arm64 .*asset is for amd64"):
        fetch(env.settings, [asset])
    assert not tree_path(env.settings, asset).exists()
    assert_cache_clean(env.settings)


def test_wrong_arch_raw_binary_is_an_error(env):
    asset = _replace_asset(env, "calicoctl", Arch.S390X, make_elf(Arch.PPC64LE))
    with pytest.raises(WrongArchitecture, match=r"calicoctl: ELF header says ppc64le"):
        fetch(env.settings, [asset])
    assert not tree_path(env.settings, asset).exists()


def test_traversal_archive_is_refused_through_fetch(env):
    asset = _replace_asset(env, "cilium-cli", Arch.AMD64,
                           _tgz([("cilium", make_elf(Arch.AMD64)), ("../../escaped", b"x")]))
    with pytest.raises(UnsafeArchive, match=r"member '../../escaped' has a '..' component"):
        fetch(env.settings, [asset])
    assert not tree_path(env.settings, asset).exists()
    assert not list(env.settings.cache_dir.rglob("escaped"))
    assert not (env.tmp / "escaped").exists()
    assert_cache_clean(env.settings)


# -- TLS ----------------------------------------------------------------------------------------

def _self_signed(tmp_path) -> tuple[Path, Path]:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "netship test mirror")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_pem, key_pem = tmp_path / "ca.pem", tmp_path / "key.pem"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return cert_pem, key_pem


def test_tls_is_verified_and_ca_bundle_is_used(env, tmp_path, monkeypatch):
    pytest.importorskip("cryptography")
    import ssl

    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
    cert, key = _self_signed(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    tls = LoopbackServer(env.mirror)
    tls.httpd.socket = ctx.wrap_socket(tls.httpd.socket, server_side=True)
    with tls:
        url = tls.url.replace("http://", "https://")
        s = env.settings.replace(mirrors=(url,))
        with pytest.raises(FetchError, match=r"TLS error: SSLError.*CERTIFICATE_VERIFY_FAILED|TLS error"):
            fetch(s, select(s, *CNI))
        assert_cache_clean(s)
        a = fetch(s.replace(ca_bundle=cert), select(s, *CNI)).assets[0]
    assert a.source.startswith("https://127.0.0.1:") and a.digest.hex == env.up.digests[a.url]


# -- interruption ---------------------------------------------------------------------------------

class _Stall(DropMidBody):
    """300 bytes, wait for ``release``, 100 more bytes, then hold the connection open."""

    def __init__(self):
        super().__init__(after=300)
        self.release, self.done = threading.Event(), threading.Event()

    def answer(self, handler, path):
        body = self.start_body(handler, path)
        handler.wfile.write(body[:300])
        handler.wfile.flush()
        self.release.wait(10)
        handler.wfile.write(body[300:400])
        handler.wfile.flush()
        self.done.wait(10)
        handler.close_connection = True


def test_cancel_keeps_the_partial_and_the_next_run_resumes(env):
    path = asset_path(env)
    stall = _Stall()
    env.srv.faults[path] = stall
    [asset] = select(env.settings, *CNI)
    part = env.settings.cache_dir / "partial" / asset.pin.sha256.hex
    dl = Downloader(env.settings)
    errors: list[BaseException] = []
    got_bytes = threading.Event()

    class Progress(PlainProgress):
        def for_asset(self, label):
            return lambda event, **f: got_bytes.set() if event == "advance" else None

    def run():
        try:
            fetch(env.settings, [asset], downloader=dl, progress=Progress())
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    assert got_bytes.wait(5)  # the first 300 bytes were read
    dl.cancel()
    stall.release.set()
    t.join(10)
    stall.done.set()
    assert [str(e) for e in errors] == ["interrupted"]
    kept = part.stat().st_size  # 300, or 400 when the next 100 bytes were read before the check
    assert kept in (300, 400) and not (env.settings.blob_dir / asset.pin.sha256.hex).exists()
    a = fetch(env.settings, [asset]).assets[0]
    assert requests_for(env.srv, path)[-1][2] == f"bytes={kept}-"
    assert sha256_file(a.blob).hex == asset.pin.sha256.hex and not part.exists()
