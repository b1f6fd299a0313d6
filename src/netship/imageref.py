"""Image references, parsed by the grammar of distribution/reference.

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [domain "/"] remote-name
    domain     := host [":" port]      (the first component, if it has "." or ":" or is "localhost")
    tag        := [\\w][\\w.-]{0,127}

``docker.io`` is implied for names without a domain and ``library/`` for single-component
Docker Hub names; ``familiar`` keeps the short spelling users write.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .digest import Digest
from .errors import ConfigError

DOCKER_HUB = "docker.io"

_ALNUM = r"[a-z0-9]+"
_SEP = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEP}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"  # \w as in Go: ASCII only (re.ASCII below)
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_REFERENCE = re.compile(
    rf"^(?P<name>(?:(?P<domain>{_DOMAIN})/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$",
    re.ASCII,
)
# The same shape with upper case allowed in the path: tells "must be lowercase" apart from garbage.
_REFERENCE_ANY_CASE = re.compile(_REFERENCE.pattern.replace("[a-z0-9]+", "[a-zA-Z0-9]+"), re.ASCII)
# distribution refuses a name that is 64 hex digits: it would be read as an image ID.
_IDENTIFIER = re.compile(r"^[a-f0-9]{64}$")
_NAME_MAX = 255


@dataclass(frozen=True)
class ImageRef:
    domain: str  # always set: "docker.io" when implied
    path: str  # "library/alpine", "flannel-io/flannel"
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str, where: str = "image") -> ImageRef:
        text = text.strip()
        m = _REFERENCE.match(text)
        if not m:
            if _REFERENCE_ANY_CASE.match(text):
                raise ConfigError(f"{where}: repository name must be lowercase: {text!r}")
            raise ConfigError(f"{where}: invalid image reference {text!r}")
        if _IDENTIFIER.match(text):
            raise ConfigError(f"{where}: {text!r} is a 64-hex image ID, not a repository name")
        name = m.group("name")
        if len(name) > _NAME_MAX:
            raise ConfigError(f"{where}: image name longer than {_NAME_MAX} characters: {text!r}")
        first, _, rest = name.partition("/")
        # distribution's rule: the first component is a domain only if it looks like one.
        if rest and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
            domain, path = first, rest
        else:
            domain, path = DOCKER_HUB, name
        if domain in ("index.docker.io", "registry-1.docker.io"):
            domain = DOCKER_HUB
        if domain == DOCKER_HUB and "/" not in path:
            path = f"library/{path}"
        if path != path.lower():
            raise ConfigError(f"{where}: repository name must be lowercase: {text!r}")
        raw_digest = m.group("digest")
        if raw_digest and raw_digest != raw_digest.lower():
            raise ConfigError(f"{where}: digest must be lower-case hex: {text!r}")
        digest = Digest.parse(raw_digest, where) if raw_digest else None
        return cls(domain, path, m.group("tag"), digest)

    @property
    def repository(self) -> str:
        """domain/path, fully qualified."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_path(self) -> str:
        return self.path.removeprefix("library/") if self.domain == DOCKER_HUB else self.path

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest if pinned, else the tag (default latest)."""
        return str(self.digest) if self.digest else (self.tag or "latest")

    def with_registry(self, registry: str, keep_path: bool = True) -> ImageRef:
        """Move to another registry. ``registry`` may carry a path prefix (host:port/prefix)."""
        host, _, prefix = registry.strip("/").partition("/")
        path = self.familiar_path if keep_path else self.path.rsplit("/", 1)[-1]
        return replace(self, domain=host, path=f"{prefix}/{path}" if prefix else path)

    def with_tag(self, tag: str | None) -> ImageRef:
        return replace(self, tag=tag)

    def with_digest(self, digest: Digest | None) -> ImageRef:
        return replace(self, digest=digest)

    def __str__(self) -> str:
        s = self.repository
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s
