"""CPU architectures, parsed once at the edge into a value that knows all its spellings."""

from __future__ import annotations

import enum
from collections.abc import Iterable

from .errors import unknown


class Arch(enum.Enum):
    # value = Kubernetes/Go name; the rest is looked up in _SPELLINGS.
    AMD64 = "amd64"
    ARM64 = "arm64"
    ARM = "arm"
    PPC64LE = "ppc64le"
    S390X = "s390x"

    @property
    def k8s(self) -> str:
        """Kubernetes / Go name, as in the node label ``kubernetes.io/arch``."""
        return self.value

    @property
    def platform(self) -> str:
        """Docker / OCI platform string, e.g. ``linux/arm/v7``."""
        return _SPELLINGS[self][0]

    @property
    def oci_architecture(self) -> str:
        return self.platform.split("/")[1]

    @property
    def oci_variant(self) -> str | None:
        parts = self.platform.split("/")
        return parts[2] if len(parts) > 2 else None

    @property
    def debian(self) -> str:
        return _SPELLINGS[self][1]

    @property
    def uname(self) -> str:
        """What ``uname -m`` prints on this CPU."""
        return _SPELLINGS[self][2]

    @property
    def elf_machine(self) -> int:
        return _SPELLINGS[self][3]

    @property
    def elf_class(self) -> int:
        """1 for 32-bit ELF, 2 for 64-bit."""
        return _SPELLINGS[self][4]

    @property
    def elf_big_endian(self) -> bool:
        return _SPELLINGS[self][5]

    @property
    def qemu(self) -> str | None:
        """Name of the qemu-user binfmt entry needed to run it on amd64, None for amd64."""
        return _SPELLINGS[self][6]

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, text: str, where: str = "arch") -> Arch:
        """Accept any of the spellings (k8s, docker platform, debian, uname)."""
        key = text.strip().lower()
        found = _BY_SPELLING.get(key)
        if found is None:
            raise unknown("architecture", text, [a.value for a in cls], where)
        return found

    @classmethod
    def from_platform(cls, os_arch_variant: str) -> Arch:
        return cls.parse(os_arch_variant, "platform")


#            platform         debian    uname     e_machine class BE    qemu
_SPELLINGS: dict[Arch, tuple[str, str, str, int, int, bool, str | None]] = {
    Arch.AMD64: ("linux/amd64", "amd64", "x86_64", 62, 2, False, None),
    Arch.ARM64: ("linux/arm64", "arm64", "aarch64", 183, 2, False, "aarch64"),
    Arch.ARM: ("linux/arm/v7", "armhf", "armv7l", 40, 1, False, "arm"),
    Arch.PPC64LE: ("linux/ppc64le", "ppc64el", "ppc64le", 21, 2, False, "ppc64le"),
    Arch.S390X: ("linux/s390x", "s390x", "s390x", 22, 2, True, "s390x"),
}

_BY_SPELLING: dict[str, Arch] = {}
for _a, (_plat, _deb, _uname, *_rest) in _SPELLINGS.items():
    for _s in (_a.value, _plat, _plat.removeprefix("linux/"), _deb, _uname):
        _BY_SPELLING[_s] = _a
_BY_SPELLING["linux/arm"] = Arch.ARM
_BY_SPELLING["armv7"] = Arch.ARM

ALL_ARCHES: tuple[Arch, ...] = tuple(Arch)


def parse_arches(spec: str | Iterable[str] | None, where: str = "--arch") -> tuple[Arch, ...]:
    """Parse ``all``, a comma-separated list, or an iterable of names.

    Result is in canonical order, without duplicates.
    """
    if spec is None:
        return ALL_ARCHES
    items: list[str] = []
    for part in [spec] if isinstance(spec, str) else list(spec):
        items.extend(p for p in str(part).replace(" ", ",").split(",") if p)
    if not items or any(p.lower() == "all" for p in items):
        return ALL_ARCHES
    chosen = {Arch.parse(p, where) for p in items}
    return tuple(a for a in ALL_ARCHES if a in chosen)
