"""ELF header checks: a binary must be for the CPU its asset claims (machine, class, byte order)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .arch import ALL_ARCHES, Arch
from .errors import WrongArchitecture

ELF_MAGIC = b"\x7fELF"
_MACHINE_NAMES = {3: "x86 (EM_386)", 8: "MIPS", 20: "PPC", 21: "PPC64", 22: "S390", 40: "ARM",
                  62: "X86_64", 183: "AARCH64", 243: "RISCV"}


@dataclass(frozen=True)
class ElfHeader:
    elf_class: int  # 1 = 32-bit, 2 = 64-bit
    big_endian: bool
    machine: int

    @property
    def arch(self) -> Arch | None:
        for a in ALL_ARCHES:
            if (a.elf_machine, a.elf_class, a.elf_big_endian) == (self.machine, self.elf_class, self.big_endian):
                return a
        return None

    def describe(self) -> str:
        a = self.arch
        bits = {1: "32-bit", 2: "64-bit"}.get(self.elf_class, f"class {self.elf_class}")
        order = "big-endian" if self.big_endian else "little-endian"
        name = _MACHINE_NAMES.get(self.machine, "unknown")
        return f"{a.k8s if a else 'not a supported arch'} (e_machine {self.machine} {name}, {bits}, {order})"


def read_header(path: Path | str) -> ElfHeader | None:
    """The ELF header of ``path``, or None when the file is not ELF."""
    with open(path, "rb") as f:
        head = f.read(20)
    return parse_header(head)


def parse_header(head: bytes) -> ElfHeader | None:
    if len(head) < 20 or head[:4] != ELF_MAGIC:
        return None
    elf_class, data = head[4], head[5]
    if data not in (1, 2):
        return ElfHeader(elf_class, False, -1)
    big = data == 2
    machine = int.from_bytes(head[18:20], "big" if big else "little")
    return ElfHeader(elf_class, big, machine)


def check(path: Path | str, arch: Arch, what: str, *, require_elf: bool = False) -> ElfHeader | None:
    """Raise WrongArchitecture when ``path`` is an ELF file for another CPU than ``arch``.

    Non-ELF files (scripts, READMEs) pass unless ``require_elf`` (raw binary assets).
    """
    header = read_header(path)
    if header is None:
        if require_elf:
            raise WrongArchitecture(f"{what}: not an ELF binary (expected one for {arch.k8s})")
        return None
    if (header.machine, header.elf_class, header.big_endian) != (arch.elf_machine, arch.elf_class, arch.elf_big_endian):
        expected = ElfHeader(arch.elf_class, arch.elf_big_endian, arch.elf_machine).describe()
        raise WrongArchitecture(f"{what}: ELF header says {header.describe()}, asset is for {expected}")
    return header
