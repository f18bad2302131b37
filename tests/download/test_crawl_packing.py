"""Packs written straight from the source (crawl state, a local folder) are the bytes that copying
to files/ and packing with tarfile gave before."""

from __future__ import annotations

import contextlib
import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from imgpipe.download.acquire import acquire
from imgpipe.download.extract import Budget, copy_tree, single_top_folder
from imgpipe.params.download import DownloadParams
from imgpipe.rawdata import (
    FILES_DIR,
    PACK_DIR,
    PACK_INDEX,
    _deterministic_member,
    member_header,
    pack_images,
    write_packs,
)


@pytest.mark.parametrize("name, size", [
    ("a.png", 0), ("images/abc.jpg", 513), ("x" * 100, 10**6), ("x" * 101, 5), ("é/ü.png", 7),
    ("d/" + "y" * 98, 3), ("big.bin", 8**11 - 1), ("huge.bin", 8**11),
])
def test_member_header_is_tarfiles_header(name, size):
    assert member_header(name, size) == _deterministic_member(name, size).tobuf(
        tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def test_write_packs_matches_tarfile_and_splits_by_size(tmp_path):
    members = [(f"img/{i:03d}.png", 100 + 37 * i) for i in range(40)] + [("ünï/long-" + "z" * 120, 9)]
    data = [hashlib.sha256(str(i).encode()).digest() * (size // 32 + 1) for i, (_n, size) in enumerate(members)]
    data = [d[:size] for d, (_n, size) in zip(data, members, strict=True)]

    @contextlib.contextmanager
    def read(i):
        yield io.BytesIO(data[i]) if i % 2 else data[i]

    summary = write_packs(tmp_path, members, read, max_pack_bytes=2000)
    assert summary["packs"] > 3
    import pandas as pd

    index = pd.read_parquet(tmp_path / PACK_INDEX)
    for pack in range(summary["packs"]):
        path = tmp_path / PACK_DIR / f"images-{pack:05d}.tar"
        rows = index[index["pack"] == pack]
        want = io.BytesIO()
        with tarfile.open(fileobj=want, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for item_id, size in zip(rows["item_id"], rows["size"], strict=True):
                i = [m[0] for m in members].index(item_id)
                tar.addfile(_deterministic_member(item_id, int(size)), io.BytesIO(data[i]))
        assert path.read_bytes() == want.getvalue()
        blob = path.read_bytes()
        for item_id, offset, size in zip(rows["item_id"], rows["offset"], rows["size"], strict=True):
            i = [m[0] for m in members].index(item_id)
            assert blob[offset:offset + size] == data[i]


def _old_way(src: Path, raw: Path) -> None:
    """What the download stage did before: copy the folder to files/, then pack it."""
    staging = raw / ".staging"
    copy_tree(src, staging, Budget("src", 1 << 40, 10**6))
    top = single_top_folder(staging)
    (staging / top if top else staging).rename(raw / FILES_DIR)
    pack_images(raw)


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("top", ["", "dataset"])
def test_a_folder_is_packed_straight_into_the_same_bytes(tmp_path, top):
    src = tmp_path / "src"
    root = src / top if top else src
    for i in range(60):
        path = root / ("train" if i % 3 else "test") / f"c{i % 4}" / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes([i]) * (50 + i * 13))
    (root / "labels.csv").write_text("file,label\n")
    (root / "README.md").write_text("hello\n")
    (root / ".hidden").write_text("x")
    (root / "train" / "link.png").symlink_to(root / "test" / "c0" / "0000.png")
    old = tmp_path / "old"
    old.mkdir()
    _old_way(src, old)
    acquire(DownloadParams(source=str(src), cache_dir=tmp_path / "cache"), tmp_path / "new")
    new = tree(tmp_path / "new")
    assert new.pop("source.json")
    assert new == tree(old)
    assert "files/labels.csv" in new and "files/README.md" in new


def _archive(path: Path, kind: str, top: str) -> None:
    """Images in split/class folders, a label file, a hidden file, an empty folder, a symlink
    and (tar) a hard link. (Two members with one name are refused: test_acquire_extract.py.)"""
    import zipfile

    pre = f"{top}/" if top else ""
    members = [(f"{pre}{'train' if i % 3 else 'test'}/c{i % 4}/{i:04d}.png", bytes([i]) * (40 + 7 * i))
               for i in range(50)]
    members += [(f"{pre}labels.csv", b"file,label\n"), (f"{pre}.DS_Store", b"junk")]
    if kind == "zip":
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in members:
                info = zipfile.ZipInfo(name)
                info.external_attr = 0o100644 << 16
                zf.writestr(info, data)
            zf.writestr(f"{pre}empty/", b"")
        return
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members:
            tar.addfile(_deterministic_member(name, len(data)), io.BytesIO(data))
        empty = tarfile.TarInfo(f"{pre}empty")
        empty.type = tarfile.DIRTYPE
        tar.addfile(empty)
        link = tarfile.TarInfo(f"{pre}train/c0/link.png")
        link.type, link.linkname = tarfile.SYMTYPE, "../../test/c0/0000.png"
        tar.addfile(link)
        hard = tarfile.TarInfo(f"{pre}test/c1/hard.png")
        hard.type, hard.linkname = tarfile.LNKTYPE, f"{pre}train/c1/0001.png"
        tar.addfile(hard)


@pytest.mark.parametrize("kind, top", [("tar", ""), ("tar", "dataset"), ("zip", "dataset")])
def test_an_archive_is_packed_straight_into_the_same_bytes(tmp_path, kind, top):
    from imgpipe.download.extract import extract_archive

    archive = tmp_path / f"a.{'zip' if kind == 'zip' else 'tar.gz'}"
    _archive(archive, kind, top)
    old = tmp_path / "old"
    staging = old / ".staging"
    extract_archive(archive, staging, Budget("a", 1 << 30, 10**6))
    found = single_top_folder(staging)
    (staging / found if found else staging).rename(old / FILES_DIR)
    pack_images(old)
    (old / FILES_DIR).mkdir(exist_ok=True)
    info = acquire(DownloadParams(source=str(archive), cache_dir=tmp_path / "cache"), tmp_path / "new")
    new = tree(tmp_path / "new")
    new.pop("source.json")
    assert new == tree(old)
    assert info.extra.get("stripped_top_folder") == (top or None)
    assert ".spill" not in str(sorted(new)) and ".staging" not in str(sorted(new))
