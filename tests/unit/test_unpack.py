"""Safe extraction: hostile archives are refused with a clear error and write nothing outside."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from netship.errors import UnsafeArchive
from netship.unpack import place_binary, unpack_tar


def make_tar(path, members, mode="w:gz"):
    """members: (name, kind, payload) with kind file|dir|sym|hard|chr|blk|fifo."""
    with tarfile.open(path, mode) as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            data = None
            if kind == "file":
                data = payload if isinstance(payload, bytes) else payload.encode()
                info.size, info.mode = len(data), 0o755 if name.endswith(("bin", "bridge")) else 0o644
            elif kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, payload
            elif kind == "hard":
                info.type, info.linkname = tarfile.LNKTYPE, payload
            elif kind == "chr":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            elif kind == "blk":
                info.type, info.devmajor, info.devminor = tarfile.BLKTYPE, 8, 0
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


@pytest.fixture
def work(tmp_path):
    (tmp_path / "out").mkdir()
    return tmp_path


def outside_untouched(work):
    names = {p.name for p in work.iterdir()}
    assert names <= {"out", "a.tgz", "dest"}, names
    assert not (work / "etc").exists()


def test_normal_archive_strips_dot_slash_renames_and_sets_modes(work):
    arc = make_tar(work / "a.tgz", [
        ("./", "dir", None), ("./bridge", "file", "B"), ("./README.md", "file", "R"),
        ("./sub/", "dir", None), ("./sub/bin", "file", "S"), ("flannel-arm64", "file", "F"),
        ("./link", "sym", "bridge"), ("./hard", "hard", "./bridge"),
    ])
    files = unpack_tar(arc, work / "dest", what="a.tgz", rename=lambda n: "flannel" if n == "flannel-arm64" else n)
    assert files == ["README.md", "bridge", "flannel", "hard", "link", "sub/bin"]
    d = work / "dest"
    assert (d / "bridge").stat().st_mode & 0o777 == 0o755
    assert (d / "README.md").stat().st_mode & 0o777 == 0o644
    assert os.readlink(d / "link") == "bridge"
    assert (d / "hard").read_text() == "B" and not (d / "hard").is_symlink()
    assert (d / "flannel").read_text() == "F"


@pytest.mark.parametrize("members,message", [
    ([("../evil", "file", "x")], r"member '../evil' has a '..' component"),
    ([("./ok/../../evil", "file", "x")], r"'..' component"),
    ([("/etc/evil", "file", "x")], r"member '/etc/evil' has an absolute path"),
    ([("link", "sym", "../../etc")], r"link 'link' -> '../../etc' points outside the archive"),
    ([("link", "sym", "/etc/passwd")], r"link 'link' -> '/etc/passwd' is absolute"),
    ([("null", "chr", None)], r"member 'null' is a device file"),
    ([("disk", "blk", None)], r"member 'disk' is a device file"),
    ([("pipe", "fifo", None)], r"member 'pipe' is a FIFO"),
    ([("hard", "hard", "../../etc/passwd")], r"'..' component"),
    ([("hard", "hard", "nothing-before")], r"hard link 'hard' -> 'nothing-before' names no earlier file"),
    # a link that stays inside, then a link through it that would leave
    ([("a", "sym", "."), ("a/b", "sym", "../outside")], r"link 'a/b' -> '../outside' points outside"),
])
def test_hostile_members_are_refused(work, members, message):
    arc = make_tar(work / "a.tgz", [("./bridge", "file", "ok"), *members])
    with pytest.raises(UnsafeArchive, match=message) as e:
        unpack_tar(arc, work / "dest", what="a.tgz")
    assert str(e.value).startswith("a.tgz: ")
    outside_untouched(work)


def test_link_out_through_inner_dir_symlink_writes_nothing_outside(work):
    # "d" -> "." is inside; "d/x" as a file is still inside: allowed
    arc = make_tar(work / "a.tgz", [("d", "sym", "."), ("d/x", "file", "x")])
    assert unpack_tar(arc, work / "dest", what="a.tgz") == ["d", "d/x"]
    assert (work / "dest" / "x").read_text() == "x"


def test_nothing_is_written_through_a_link_that_leads_out(work):
    (work / "dest").mkdir()
    (work / "dest" / "pre").symlink_to(work / "out")  # e.g. left by something else
    arc = make_tar(work / "a.tgz", [("pre/x", "file", "x")])
    with pytest.raises(UnsafeArchive, match="member 'pre/x' would be written through a link outside the target"):
        unpack_tar(arc, work / "dest", what="a.tgz")
    assert list((work / "out").iterdir()) == []


def test_not_a_tar_is_a_clear_error(work):
    (work / "a.tgz").write_bytes(b"this is not gzip")
    with pytest.raises(UnsafeArchive, match="a.tgz: not a readable tar archive"):
        unpack_tar(work / "a.tgz", work / "dest", what="a.tgz")


def test_truncated_archive_is_a_clear_error(work):
    arc = make_tar(work / "a.tgz", [("./bridge", "file", os.urandom(50_000).hex())])
    data = arc.read_bytes()
    arc.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnsafeArchive, match="a.tgz: "):
        unpack_tar(arc, work / "dest", what="a.tgz")


def test_place_binary_is_executable(work):
    (work / "blob").write_bytes(b"\x7fELF...")
    assert place_binary(work / "blob", work / "dest", "calicoctl") == ["calicoctl"]
    assert (work / "dest" / "calicoctl").stat().st_mode & 0o777 == 0o755


def test_member_ids_describe_what_unpack_writes(work):
    from netship.fetch import _file_id
    from netship.unpack import member_ids

    arc = make_tar(work / "a.tgz", [("./bridge", "file", "B"), ("./README.md", "file", "R"),
                                    ("./link", "sym", "bridge"), ("./hard", "hard", "./bridge")])
    files = unpack_tar(arc, work / "dest", what="a.tgz")
    ids = member_ids(arc, what="a.tgz")
    assert sorted(ids) == files
    assert {rel: _file_id(work / "dest" / rel, with_hash=True) for rel in files} == ids
    assert ids["bridge"].endswith(":x") and ids["README.md"].endswith(":-") and ids["link"] == "symlink:bridge"
