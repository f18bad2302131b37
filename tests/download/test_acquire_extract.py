"""Safe extraction and folder copying: every hostile member is refused by name."""

from __future__ import annotations

import os
import stat
import tarfile

import pytest
from archives import gzip_tar_bomb, imagefolder, tar_bytes, zip_bomb, zip_bytes

from imgpipe.download.extract import Budget, copy_tree, extract_archive, manifest_sha256, single_top_folder
from imgpipe.errors import SourceError, UnsafeArchiveError


def _budget(max_bytes=10**9, max_members=10**6):
    return Budget("src", max_bytes, max_members)


def _extract(tmp_path, data: bytes, name="a.bin", **limits):
    archive = tmp_path / name
    archive.write_bytes(data)
    dest = tmp_path / "out"
    budget = _budget(**limits)
    extract_archive(archive, dest, budget)
    return dest, budget


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("compression", ["", "gz", "bz2", "xz"])
def test_tar_round_trip(tmp_path, compression):
    files = imagefolder(splits=["train", "test"])
    dest, budget = _extract(tmp_path, tar_bytes(sorted(files.items()), compression))
    assert _files(dest) == sorted(files)
    assert all((dest / k).read_bytes() == v for k, v in files.items())
    assert budget.files == len(files) and budget.bytes == sum(map(len, files.values()))


def test_zip_round_trip_with_backslash_names(tmp_path):
    dest, _ = _extract(tmp_path, zip_bytes([("cat\\0.png", b"a"), ("dog/1.png", b"b")]))
    assert _files(dest) == ["cat/0.png", "dog/1.png"]


def test_type_is_sniffed_not_taken_from_the_name(tmp_path):
    dest, _ = _extract(tmp_path, zip_bytes([("x.png", b"a")]), name="misnamed.tar.gz")
    assert _files(dest) == ["x.png"]
    with pytest.raises(SourceError, match="not a supported archive"):
        _extract(tmp_path, b"just some text, not an archive" * 30, name="a.zip")


SYM, LNK, FIFO, CHR, BLK = tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE


@pytest.mark.parametrize("members,match", [
    ([("../evil.txt", b"x")], r"member '\.\./evil\.txt' points outside the destination"),
    ([("a/../../evil.txt", b"x")], r"'a/\.\./\.\./evil\.txt' points outside"),
    ([("/etc/evil", b"x")], r"member '/etc/evil' has an absolute path"),
    ([("ok.txt", b"x"), ("link", {"type": SYM, "linkname": "/etc/passwd"})], r"symlink 'link' points outside"),
    ([("d/link", {"type": SYM, "linkname": "../../outside"})], r"symlink 'd/link' points outside"),
    ([("hard", {"type": LNK, "linkname": "../../etc/passwd"})], r"hard link 'hard' points outside"),
    ([("hard", {"type": LNK, "linkname": "/etc/passwd"})], r"hard link 'hard' points outside"),
    ([("hard", {"type": LNK, "linkname": "later.txt"}), ("later.txt", b"x")], r"hard link 'hard' names"),
    ([("pipe", {"type": FIFO})], r"member 'pipe' is a FIFO"),
    ([("null", {"type": CHR, "dev": (1, 3)})], r"member 'null' is a device file"),
    ([("sda", {"type": BLK, "dev": (8, 0)})], r"member 'sda' is a device file"),
])
def test_hostile_tar_members_are_refused(tmp_path, members, match):
    with pytest.raises(UnsafeArchiveError, match=match):
        _extract(tmp_path, tar_bytes(members, "gz"))
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path.parent / "evil.txt").exists()


def test_links_inside_become_plain_copies(tmp_path):
    members = [("d/a.png", b"A"), ("d/hard.png", {"type": LNK, "linkname": "d/a.png"}),
               ("d/sym.png", {"type": SYM, "linkname": "a.png"}), ("dirlink", {"type": SYM, "linkname": "d"}),
               ("dangling", {"type": SYM, "linkname": "nope"})]
    dest, budget = _extract(tmp_path, tar_bytes(members))
    assert _files(dest) == ["d/a.png", "d/hard.png", "d/sym.png"]
    assert not any(p.is_symlink() for p in dest.rglob("*"))
    assert (dest / "d/sym.png").read_bytes() == b"A"
    assert budget.skipped_links == ["dirlink", "dangling"]


@pytest.mark.parametrize("members,kw,match", [
    ([("../x", b"1")], {}, r"'\.\./x' points outside"),
    ([("/abs", b"1")], {}, "absolute path"),
    ([("C:/win", b"1")], {}, "absolute path"),
    ([("ok", b"1")], {"symlinks": {"l": "../../etc/passwd"}}, r"symlink 'l' points outside"),
    ([("ok", b"1")], {"special": {"fifo": stat.S_IFIFO | 0o644}}, r"'fifo' is a FIFO"),
    ([("ok", b"1")], {"special": {"dev": stat.S_IFCHR | 0o644}}, r"'dev' is a device file"),
])
def test_hostile_zip_members_are_refused(tmp_path, members, kw, match):
    with pytest.raises(UnsafeArchiveError, match=match):
        _extract(tmp_path, zip_bytes(members, **kw))


def test_zip_symlink_inside_is_copied(tmp_path):
    dest, _ = _extract(tmp_path, zip_bytes([("a.png", b"A")], symlinks={"b.png": "a.png"}))
    assert (dest / "b.png").read_bytes() == b"A" and not (dest / "b.png").is_symlink()


def test_size_limit_stops_bombs(tmp_path):
    with pytest.raises(UnsafeArchiveError, match=r"max_extract_bytes=1048576 .* member 'zeros\.bin'"):
        _extract(tmp_path, zip_bomb(8), max_bytes=1 << 20)
    with pytest.raises(UnsafeArchiveError, match=r"max_extract_bytes=1048576 .* member 'zeros\.bin'"):
        _extract(tmp_path, gzip_tar_bomb(8), name="b.tgz", max_bytes=1 << 20)


def test_member_count_limit(tmp_path):
    members = [(f"f{i}.txt", b"x") for i in range(20)]
    with pytest.raises(UnsafeArchiveError, match=r"max_members=10 .*'f10\.txt'"):
        _extract(tmp_path, tar_bytes(members), max_members=10)
    with pytest.raises(UnsafeArchiveError, match=r"max_members=10"):
        _extract(tmp_path, zip_bytes(members), max_members=10)


def test_corrupt_and_truncated_archives(tmp_path):
    data = tar_bytes(sorted(imagefolder().items()), "gz")
    with pytest.raises(SourceError, match="corrupt or truncated archive"):
        _extract(tmp_path, data[: len(data) // 2], name="t.tgz")
    z = bytearray(zip_bytes([("a.txt", b"hello" * 100)]))
    z[40:60] = b"\x00" * 20
    with pytest.raises(SourceError, match="corrupt or truncated zip"):
        _extract(tmp_path, bytes(z), name="c.zip")
    with pytest.raises(SourceError, match="corrupt or truncated zip"):
        _extract(tmp_path, zip_bytes([("a.txt", b"x" * 5000)])[:-30], name="d.zip")


def test_single_top_folder_rules(tmp_path):
    for name, entries, expected in [
        ("one", ["pets/cat/a.png"], "pets"),
        ("hidden", ["pets/cat/a.png", ".DS_Store", "__MACOSX/x"], "pets"),
        ("split", ["train/cat/a.png"], None),
        ("two", ["cat/a.png", "dog/b.png"], None),
        ("file", ["a.png"], None),
    ]:
        root = tmp_path / name
        for rel in entries:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(b"x")
        assert single_top_folder(root) == expected, name


def test_copy_tree_copies_and_hashes(tmp_path):
    src = tmp_path / "src"
    for rel, body in imagefolder().items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(body)
    (src / ".git").mkdir()
    (src / ".git/config").write_text("x")
    os.symlink("cat/cat_0.png", src / "alias.png")
    entries = copy_tree(src, tmp_path / "dst", _budget())
    assert [e[0] for e in entries] == sorted([*imagefolder(), "alias.png"])
    assert not (tmp_path / "dst/.git").exists() and not (tmp_path / "dst/alias.png").is_symlink()
    assert len(manifest_sha256(entries)) == 64
    assert (src / "alias.png").is_symlink()  # the user's folder is untouched


@pytest.mark.parametrize("make,match", [
    (lambda src: os.symlink("/etc/passwd", src / "escape.png"), r"symlink 'escape\.png' points outside"),
    (lambda src: os.symlink(src.parent, src / "up"), r"symlink 'up' points outside"),
    (lambda src: os.mkfifo(src / "pipe"), r"'pipe' is a FIFO"),
])
def test_copy_tree_refuses_escapes_and_special_files(tmp_path, make, match):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(b"x")
    make(src)
    with pytest.raises(UnsafeArchiveError, match=match):
        copy_tree(src, tmp_path / "dst", _budget())


@pytest.mark.parametrize("build", [
    lambda: tar_bytes([("cat/a.png", b"first"), ("dog/b.png", b"x"), ("cat/a.png", b"second")]),
    lambda: zip_bytes([("cat/a.png", b"first"), ("dog/b.png", b"x"), ("cat/a.png", b"second")]),
    lambda: tar_bytes([("cat/a.png", b"first"), ("dog/b.png", b"x"), ("cat/a.png", {"type": SYM, "linkname": "../dog/b.png"})]),
])
def test_two_members_with_one_name_are_refused_with_both_indices(tmp_path, build):
    # Before: the last one silently replaced the first.
    with pytest.raises(UnsafeArchiveError, match=r"member #3 'cat/a\.png' has the same path as member #1"):
        _extract(tmp_path, build())
