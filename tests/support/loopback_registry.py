"""Extra Distribution registries on 127.0.0.1 for tests, and small multi-arch test images.

``LoopbackRegistry`` runs the real ``/usr/bin/docker-registry`` (the one scripts/setup-stack.sh
installs) on a free loopback port with its own config and storage, optionally behind htpasswd
basic auth. ``seed_multiarch`` pushes a small image for the given arches (plus an attestation
entry, as BuildKit makes) through ``netship.registry``, so no daemon is needed.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import requests

from netship import registry as reg
from netship.arch import Arch
from netship.digest import sha256_bytes

BINARY = "/usr/bin/docker-registry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bcrypt_hash(password: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # glibc/libxcrypt bcrypt; Distribution's htpasswd only accepts bcrypt

        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))


class LoopbackRegistry:
    def __init__(self, workdir: Path, *, users: dict[str, str] | None = None, extra_config: str = ""):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.users = users or {}
        self.extra_config = extra_config  # more config lines (e.g. an `auth: {token: ...}` section)
        self.proc: subprocess.Popen | None = None

    def start(self) -> LoopbackRegistry:
        if not os.path.exists(BINARY):
            raise RuntimeError(f"{BINARY} missing: run scripts/setup-stack.sh")
        cfg = [
            "version: 0.1", "log: {level: error, accesslog: {disabled: true}}",
            f"storage: {{filesystem: {{rootdirectory: {self.dir / 'data'}}}, delete: {{enabled: true}}}}",
            f"http: {{addr: '{self.host}'}}",
        ]
        if self.users:
            htp = self.dir / "htpasswd"
            htp.write_text("".join(f"{u}:{bcrypt_hash(p)}\n" for u, p in self.users.items()))
            cfg.append(f"auth: {{htpasswd: {{realm: netship-test, path: {htp}}}}}")
        if self.extra_config:
            cfg.append(self.extra_config.rstrip("\n"))
        (self.dir / "config.yml").write_text("\n".join(cfg) + "\n")
        self.log = open(self.dir / "registry.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([BINARY, "serve", str(self.dir / "config.yml")],
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        for _ in range(200):
            try:
                r = requests.get(f"http://{self.host}/v2/", timeout=1)
                if r.status_code in (200, 401):
                    return self
            except requests.ConnectionError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"registry on {self.host} did not start: {(self.dir / 'registry.log').read_text()[-500:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None
        if getattr(self, "log", None):
            self.log.close()

    def wipe(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def client(self, docker_config: Path | None = None) -> reg.Registry:
        return reg.Registry(self.host, docker_config=docker_config)


def _layer(content: bytes, name: str) -> tuple[bytes, str]:
    """A gzip'd tar with one file, byte-stable (mtime 0), and its diff_id (sha256 of the tar)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(content), 0o644, 0
        t.addfile(info, io.BytesIO(content))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as g:
        g.write(raw.getvalue())
    return out.getvalue(), str(sha256_bytes(raw.getvalue()))


@dataclass(frozen=True)
class Seeded:
    repo: str
    tag: str
    index_digest: str
    arch_digests: dict[Arch, str]
    attestation_digest: str
    blob_digests: set[str]


def _push_bytes(client: reg.Registry, repo: str, data: bytes, media_type: str) -> reg.Descriptor:
    desc = reg.Descriptor(media_type, sha256_bytes(data), len(data))
    client.push_blob(repo, desc, lambda: io.BytesIO(data))
    return desc


def _put(client: reg.Registry, repo: str, ref: str, obj: dict, media_type: str) -> reg.Manifest:
    data = json.dumps(obj, indent=2).encode()
    m = reg.Manifest(media_type, sha256_bytes(data), data)
    client.put_manifest(repo, ref, m)
    return m


def seed_multiarch(client: reg.Registry, repo: str, tag: str, arches: tuple[Arch, ...], *,
                   shared: bytes = b"shared base layer\n", oci: bool = False) -> Seeded:
    """Push REPO:TAG as a manifest list of ``arches`` plus one ``unknown/unknown`` attestation
    manifest. One layer (``shared``) is the same in every arch and every repo seeded with it."""
    layer_mt = "application/vnd.oci.image.layer.v1.tar+gzip" if oci else "application/vnd.docker.image.rootfs.diff.tar.gzip"
    man_mt = reg.OCI_MANIFEST if oci else reg.DOCKER_MANIFEST
    cfg_mt = reg.OCI_CONFIG if oci else reg.DOCKER_CONFIG
    blobs: set[str] = set()
    entries, per_arch = [], {}
    base_gz, base_diff = _layer(shared, "etc/base")
    base = _push_bytes(client, repo, base_gz, layer_mt)
    blobs.add(str(base.digest))
    for arch in arches:
        own_gz, own_diff = _layer(f"{repo} {tag} {arch}\n".encode(), "etc/arch")
        own = _push_bytes(client, repo, own_gz, layer_mt)
        # a config docker load and ctr import accept: diff_ids match the layers
        cfg = {"architecture": arch.oci_architecture, "os": "linux",
               "rootfs": {"type": "layers", "diff_ids": [base_diff, own_diff]},
               "config": {"Env": [f"ARCH={arch}"]}}
        if arch.oci_variant:
            cfg["variant"] = arch.oci_variant
        cdesc = _push_bytes(client, repo, json.dumps(cfg, sort_keys=True).encode(), cfg_mt)
        blobs |= {str(own.digest), str(cdesc.digest)}
        m = _put(client, repo, f"{tag}-src-{arch}", {
            "schemaVersion": 2, "mediaType": man_mt, "config": cdesc.to_json(),
            "layers": [base.to_json(), own.to_json()]}, man_mt)
        plat = {"architecture": arch.oci_architecture, "os": "linux"}
        if arch.oci_variant:
            plat["variant"] = arch.oci_variant
        entries.append({"mediaType": man_mt, "digest": str(m.digest), "size": m.size, "platform": plat})
        per_arch[arch] = str(m.digest)
    # an attestation manifest, as BuildKit adds (platform unknown/unknown)
    att_layer = _push_bytes(client, repo, b'{"predicateType": "https://slsa.dev/provenance/v0.2"}',
                            "application/vnd.in-toto+json")
    att_cfg = _push_bytes(client, repo, b"{}", reg.OCI_CONFIG)
    att = _put(client, repo, f"{tag}-att", {"schemaVersion": 2, "mediaType": reg.OCI_MANIFEST,
                                             "config": att_cfg.to_json(), "layers": [att_layer.to_json()]},
               reg.OCI_MANIFEST)
    blobs |= {str(att_layer.digest), str(att_cfg.digest)}
    entries.append({"mediaType": reg.OCI_MANIFEST, "digest": str(att.digest), "size": att.size,
                    "platform": {"architecture": "unknown", "os": "unknown"},
                    "annotations": {"vnd.docker.reference.type": "attestation-manifest",
                                    "vnd.docker.reference.digest": per_arch[arches[0]]}})
    index_mt = reg.OCI_INDEX if oci else reg.DOCKER_LIST
    index = _put(client, repo, tag, {"schemaVersion": 2, "mediaType": index_mt, "manifests": entries}, index_mt)
    return Seeded(repo, tag, str(index.digest), per_arch, str(att.digest), blobs)
