"""ELF header checks: machine, class and byte order must match the declared arch."""

from __future__ import annotations

import pytest

from netship.arch import ALL_ARCHES, Arch
from netship.elf import ElfHeader, check, parse_header, read_header
from netship.errors import WrongArchitecture
from tests.support.upstream import make_elf


@pytest.mark.parametrize("arch", ALL_ARCHES, ids=str)
def test_header_of_each_arch_is_read_back(tmp_path, arch):
    p = tmp_path / "bin"
    p.write_bytes(make_elf(arch))
    h = read_header(p)
    assert h == ElfHeader(arch.elf_class, arch.elf_big_endian, arch.elf_machine)
    assert h.arch is arch
    assert check(p, arch, "bin") == h


def test_s390x_is_read_big_endian():
    h = parse_header(make_elf(Arch.S390X)[:20])
    assert h.big_endian and h.machine == 22  # little-endian reading would give 0x1600


@pytest.mark.parametrize("declared,actual", [
    (Arch.AMD64, Arch.ARM64), (Arch.ARM64, Arch.AMD64), (Arch.ARM, Arch.ARM64),
    (Arch.PPC64LE, Arch.S390X), (Arch.S390X, Arch.PPC64LE),
])
def test_wrong_arch_is_an_error_naming_both(tmp_path, declared, actual):
    p = tmp_path / "bridge"
    p.write_bytes(make_elf(actual))
    with pytest.raises(WrongArchitecture) as e:
        check(p, declared, "cni-plugins-linux-x.tgz: bridge")
    msg = str(e.value)
    assert msg.startswith("cni-plugins-linux-x.tgz: bridge: ELF header says " + actual.k8s)
    assert f"asset is for {declared.k8s}" in msg


def test_class_mismatch_is_caught(tmp_path):
    # e_machine of aarch64 but a 32-bit header: not a valid arm64 binary
    data = bytearray(make_elf(Arch.ARM64))
    data[4] = 1
    p = tmp_path / "b"
    p.write_bytes(bytes(data))
    with pytest.raises(WrongArchitecture, match="32-bit"):
        check(p, Arch.ARM64, "b")


def test_non_elf_passes_unless_required(tmp_path):
    p = tmp_path / "mk-docker-opts.sh"
    p.write_text("#!/bin/sh\necho hi\n")
    assert check(p, Arch.AMD64, "script") is None
    with pytest.raises(WrongArchitecture, match="calicoctl: not an ELF binary"):
        check(p, Arch.AMD64, "calicoctl", require_elf=True)


def test_short_file_is_not_elf(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(b"\x7fELF\x02")
    assert read_header(p) is None
