"""The one image-reference parser, against the grammar of distribution/reference."""

from __future__ import annotations

import pytest

from netship.digest import Digest
from netship.errors import ConfigError
from netship.imageref import ImageRef

D = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    "text, domain, path, tag, digest",
    [
        # no tag; docker.io and library/ implied
        ("alpine", "docker.io", "library/alpine", None, None),
        ("alpine:3.20", "docker.io", "library/alpine", "3.20", None),
        ("cloudnativelabs/kube-router", "docker.io", "cloudnativelabs/kube-router", None, None),
        ("docker.io/cloudnativelabs/kube-router", "docker.io", "cloudnativelabs/kube-router", None, None),
        ("docker.io/alpine", "docker.io", "library/alpine", None, None),
        ("index.docker.io/library/alpine:edge", "docker.io", "library/alpine", "edge", None),
        # real hosts, nested paths
        ("ghcr.io/flannel-io/flannel:v0.28.9", "ghcr.io", "flannel-io/flannel", "v0.28.9", None),
        ("quay.io/calico/node:v3.31.7", "quay.io", "calico/node", "v3.31.7", None),
        ("registry.k8s.io/a/b/c/d:1", "registry.k8s.io", "a/b/c/d", "1", None),
        # port in host, localhost, IP, IPv6
        ("127.0.0.1:5000/flannel:v0.28.9-amd64", "127.0.0.1:5000", "flannel", "v0.28.9-amd64", None),
        ("localhost/foo", "localhost", "foo", None, None),
        ("localhost:5000/foo/bar:t", "localhost:5000", "foo/bar", "t", None),
        ("[::1]:5000/foo:t", "[::1]:5000", "foo", "t", None),
        ("myhost:5000/foo", "myhost:5000", "foo", None, None),
        # a first component without '.', ':' or upper case is a Docker Hub path, not a host
        ("myhost/foo", "docker.io", "myhost/foo", None, None),
        # upper case first component is a host (distribution's rule)
        ("Registry/foo", "Registry", "foo", None, None),
        # "localhost:5000" alone is the name localhost with tag 5000
        ("localhost:5000", "docker.io", "library/localhost", "5000", None),
        # digests, with and without tag
        (f"alpine@{D}", "docker.io", "library/alpine", None, D),
        (f"ghcr.io/flannel-io/flannel:v0.28.9@{D}", "ghcr.io", "flannel-io/flannel", "v0.28.9", D),
        (f"127.0.0.1:5000/x/y@{D}", "127.0.0.1:5000", "x/y", None, D),
        # separators: '.', '_', '__', runs of '-'
        ("ab_c__d---e/f.g-h:T_1.2-3", "docker.io", "ab_c__d---e/f.g-h", "T_1.2-3", None),
        # a "." in the first component makes it a host
        ("a.b/c", "a.b", "c", None, None),
        # tag 128 characters
        ("x:" + "a" * 128, "docker.io", "library/x", "a" * 128, None),
    ],
)
def test_parses(text, domain, path, tag, digest):
    ref = ImageRef.parse(text)
    assert (ref.domain, ref.path, ref.tag) == (domain, path, tag)
    assert ref.digest == (Digest.parse(digest) if digest else None)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "invalid"),
        ("Alpine", "lowercase"),
        ("docker.io/Library/alpine", "lowercase"),
        ("ghcr.io/Flannel-io/flannel:v1", "lowercase"),
        ("alpine:", "invalid"),
        ("alpine:-tag", "invalid"),  # tag may not start with '-'
        ("alpine:.tag", "invalid"),
        ("x:" + "a" * 129, "invalid"),  # tag longer than 128
        ("alpine:tág", "invalid"),  # \w is ASCII in the grammar
        ("alpine@sha256:abc", "invalid"),  # digest too short
        ("alpine@sha256:" + "A" * 64, "lower-case"),
        ("alpine@md5:" + "a" * 32, "digest"),  # valid shape, unsupported algorithm
        ("foo//bar", "invalid"),
        ("foo/bar/", "invalid"),
        ("-foo/bar", "invalid"),
        ("foo_/bar", "invalid"),
        ("foo/_bar", "invalid"),
        ("foo/bar___baz", "invalid"),  # three underscores are no separator
        ("ho st/foo", "invalid"),
        ("host:port/foo", "invalid"),  # port must be digits
        ("-host.io/foo", "invalid"),
        ("a" * 64, "image ID"),
        ("a/" + "b" * 254, "longer than 255"),
        ("http://ghcr.io/foo", "invalid"),
    ],
)
def test_rejects(text, message):
    with pytest.raises(ConfigError, match=message):
        ImageRef.parse(text, "test")


def test_error_names_where():
    with pytest.raises(ConfigError, match=r"^deploy\.yml container x: invalid image reference 'a b'$"):
        ImageRef.parse("a b", "deploy.yml container x")


def test_64_hex_with_tag_is_a_name():
    # distribution only refuses the whole string being an ID
    assert ImageRef.parse("a" * 64 + ":t").path == "library/" + "a" * 64


@pytest.mark.parametrize(
    "text, registry, expected",
    [
        ("ghcr.io/flannel-io/flannel:v0.28.9", "127.0.0.1:5000", "127.0.0.1:5000/flannel-io/flannel:v0.28.9"),
        ("docker.io/cloudnativelabs/kube-router", "reg:5000", "reg:5000/cloudnativelabs/kube-router"),
        ("alpine:3", "reg.example", "reg.example/alpine:3"),  # library/ dropped: the familiar path
        (f"quay.io/calico/node:v3@{D}", "reg:5000/mirror", f"reg:5000/mirror/calico/node:v3@{D}"),
        ("localhost:5000/a/b", "[::1]:5000", "[::1]:5000/a/b"),
    ],
)
def test_with_registry(text, registry, expected):
    moved = ImageRef.parse(text).with_registry(registry)
    assert str(moved) == expected
    assert ImageRef.parse(str(moved)) == moved  # the output parses back to the same value


def test_str_round_trips_and_reference():
    for text in ("ghcr.io/a/b:1", f"ghcr.io/a/b:1@{D}", f"ghcr.io/a/b@{D}", "reg:5000/x"):
        ref = ImageRef.parse(text)
        assert str(ref) == text
        assert ImageRef.parse(str(ref)) == ref
    assert ImageRef.parse("x").reference == "latest"
    assert ImageRef.parse(f"x:1@{D}").reference == D
    assert str(ImageRef.parse("alpine")) == "docker.io/library/alpine"
