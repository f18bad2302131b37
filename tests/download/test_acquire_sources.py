"""acquire() for each kind of source, served by the loopback HTTP server in its official layout."""

from __future__ import annotations

import pickle
import tarfile
from dataclasses import replace

import pytest
from archives import (
    CIFAR10_NAMES,
    RunsCode,
    cifar10_tarball,
    cifar100_tarball,
    imagefolder,
    images_with_csv,
    md5,
    mnist_files,
    sha256,
    tar_bytes,
    zip_bytes,
)
from servers import FAST_BACKOFF

from imgpipe import rawdata
from imgpipe.download.acquire import OFFICIAL_DATASETS, OfficialFile, acquire
from imgpipe.errors import ChecksumMismatch, SourceError, UnsafeArchiveError


def run(cfg, out, datasets=None):
    return acquire(cfg, out, datasets=datasets, backoff_s=FAST_BACKOFF)


def mirror(server, name: str, bodies: dict[str, bytes]) -> dict:
    """The official registry with ``name`` pointed at the loopback server and these files' md5s."""
    ds = OFFICIAL_DATASETS[name]
    files = tuple(OfficialFile(f.name, server.add(f"/{name}/{f.name}", bodies[f.name]), md5(bodies[f.name]))
                  for f in ds.files)
    return {**OFFICIAL_DATASETS, name: replace(ds, files=files)}


def leftovers(parent):
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_official_registry_is_as_published():
    cifar = OFFICIAL_DATASETS["cifar10"].files[0]
    assert cifar.url == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert cifar.md5 == "c58f30108f718f92721af3b95e74349a"
    assert OFFICIAL_DATASETS["cifar100"].files[0].md5 == "eb9058c3a382ffc7106e4002c42a8d85"
    mnist = OFFICIAL_DATASETS["mnist"].files
    assert [f.name for f in mnist] == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                       "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    assert mnist[0].url == "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz"
    assert mnist[0].md5 == "f68b3c2dcbeaaa9fbdd348bbdeb94873"
    assert OFFICIAL_DATASETS["fashion-mnist"].files[3].md5 == "bb300cfdad3c16e7a12a480ee83cd310"
    assert OFFICIAL_DATASETS["fashion-mnist"].classes[-1] == "Ankle boot"


def test_cifar10(http_server, make_cfg, tmp_path):
    data = cifar10_tarball(per_batch=3)
    datasets = mirror(http_server, "cifar10", {"cifar-10-python.tar.gz": data})
    out = tmp_path / "data/raw"
    info = run(make_cfg(source="cifar10"), out, datasets)
    assert (info.kind, info.layout, info.classes) == ("official", "cifar10", CIFAR10_NAMES)
    assert info.sha256 == sha256(data) and info.size_bytes == len(data) and info.extra["md5"] == md5(data)
    for rel, _split in rawdata.CIFAR10_FILES:
        assert (out / "files" / rel).is_file()
    assert (out / "files/cifar-10-batches-py/batches.meta").is_file()
    items = rawdata.list_items(out)
    assert len(items) == 18 and items[0].item_id == "cifar-10-batches-py/data_batch_1#0"
    assert info.extra["summary"] == {"train images": 15, "test images": 3, "classes": 10}
    assert rawdata.SourceInfo.read(out) == info


def test_cifar100(http_server, make_cfg, tmp_path):
    data = cifar100_tarball(per_split=4)
    datasets = mirror(http_server, "cifar100", {"cifar-100-python.tar.gz": data})
    info = run(make_cfg(source="cifar100"), tmp_path / "raw", datasets)
    assert info.layout == "cifar100" and len(info.classes) == 100 and info.classes[7] == "fine7"
    splits = [(rel, split, len(labels)) for rel, split, _x, labels in
              rawdata.iter_array_files(tmp_path / "raw/files", "cifar100")]
    assert splits == [("cifar-100-python/train", "train", 4), ("cifar-100-python/test", "test", 4)]


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_datasets(http_server, make_cfg, tmp_path, name):
    bodies = mnist_files(n_train=6, n_test=4)
    info = run(make_cfg(source=name), tmp_path / "raw", mirror(http_server, name, bodies))
    assert (info.kind, info.layout) == ("official", "idx")
    assert info.classes == list(OFFICIAL_DATASETS[name].classes) and len(info.classes) == 10
    for fname, body in bodies.items():  # kept gzipped, byte for byte
        assert (tmp_path / "raw/files" / fname).read_bytes() == body
        assert info.extra["files"][fname]["sha256"] == sha256(body)
    assert info.url == f"{http_server.base_url}/{name}/" and info.size_bytes == sum(map(len, bodies.values()))
    arrays = list(rawdata.iter_array_files(tmp_path / "raw/files", "idx"))
    assert [(a[1], a[2].shape) for a in arrays] == [("train", (6, 28, 28)), ("test", (4, 28, 28))]


def test_official_checksum_mismatch_keeps_nothing(http_server, make_cfg, tmp_path):
    data = cifar10_tarball(per_batch=2)
    datasets = mirror(http_server, "cifar10", {"cifar-10-python.tar.gz": data})
    good = datasets["cifar10"].files[0]
    datasets["cifar10"] = replace(datasets["cifar10"], files=(replace(good, md5="f" * 32),))
    out = tmp_path / "data/raw"
    with pytest.raises(ChecksumMismatch, match=f"^cifar10: .*expected md5 f{{32}}, got {md5(data)}$"):
        run(make_cfg(source="cifar10"), out, datasets)
    assert not out.exists() and leftovers(out.parent) == []
    assert [p for p in (tmp_path / "cache").iterdir()] == []


def test_malicious_pickle_in_official_archive_never_runs(http_server, make_cfg, tmp_path):
    marker = tmp_path / "pwned"
    evil = pickle.dumps({b"data": RunsCode(f"touch {marker}"), b"labels": []}, protocol=2)
    data = cifar10_tarball(per_batch=2, batch_override=evil)
    datasets = mirror(http_server, "cifar10", {"cifar-10-python.tar.gz": data})
    out = tmp_path / "data/raw"
    with pytest.raises(SourceError, match=r"data_batch_1: unsafe or corrupt pickle: refused global '(posix|os)\.system'"):
        run(make_cfg(source="cifar10"), out, datasets)
    assert not marker.exists() and not out.exists() and leftovers(out.parent) == []


def test_truncated_idx_gzip_is_refused(http_server, make_cfg, tmp_path):
    bodies = mnist_files()
    bodies["t10k-images-idx3-ubyte.gz"] = bodies["t10k-images-idx3-ubyte.gz"][:-20]  # md5 matches the damage
    out = tmp_path / "data/raw"
    with pytest.raises(SourceError, match="^mnist: .*t10k-images-idx3-ubyte.gz: corrupt or truncated gzip"):
        run(make_cfg(source="mnist"), out, mirror(http_server, "mnist", bodies))
    assert not out.exists() and leftovers(out.parent) == []


def test_official_dataset_unreachable(http_server, make_cfg, tmp_path):
    datasets = mirror(http_server, "cifar10", {"cifar-10-python.tar.gz": b""})
    route = http_server.route("/cifar10/cifar-10-python.tar.gz")
    route.status, route.fail_times = 500, -1
    with pytest.raises(SourceError, match=r"^cifar10: http://.*cifar-10-python\.tar\.gz: HTTP 500 .*gave up after 2"):
        run(make_cfg(source="cifar10", retries=2), tmp_path / "raw", datasets)


@pytest.mark.parametrize("kind", ["tar", "tgz", "zip"])
def test_imagefolder_archives_with_splits(http_server, make_cfg, tmp_path, kind):
    files = imagefolder(splits=["train", "val", "test"], top="flowers")
    members = sorted(files.items())
    data = zip_bytes(members) if kind == "zip" else tar_bytes(members, "gz" if kind == "tgz" else "")
    url = http_server.add(f"/flowers.{kind}", data)
    info = run(make_cfg(source=url, sha256=sha256(data)), tmp_path / "raw")
    assert (info.kind, info.layout, info.url, info.sha256) == ("url", "files", url, sha256(data))
    assert info.extra["stripped_top_folder"] == "flowers" and info.label_file is None and info.classes is None
    items = rawdata.list_items(tmp_path / "raw")
    assert {i.source_split for i in items} == {"train", "val", "test"}
    assert [i.item_id for i in items] == sorted(k.removeprefix("flowers/") for k in files)
    # Images are packed for DVC; their bytes come back exactly.
    assert {i.item_id: rawdata.read_item_bytes(tmp_path / "raw", i) for i in items} == {
        k.removeprefix("flowers/"): v for k, v in files.items()
    }


def test_images_plus_csv(http_server, make_cfg, tmp_path):
    files = images_with_csv(n=4)
    url = http_server.add("/d.zip", zip_bytes(sorted(files.items())))
    info = run(make_cfg(source=url), tmp_path / "raw")
    assert (tmp_path / "raw/files/labels.csv").read_text().startswith("file,label\n")
    assert [i.item_id for i in rawdata.list_items(tmp_path / "raw", info)] == [f"images/img_{i}.png" for i in range(4)]


def test_local_archive_and_folder(make_cfg, tmp_path):
    files = imagefolder(top=None)
    archive = tmp_path / "pets.tar.gz"
    archive.write_bytes(tar_bytes(sorted(files.items()), "gz"))
    info = run(make_cfg(source=str(archive)), tmp_path / "raw1")
    assert (info.kind, info.final_url, info.sha256) == ("path", str(archive), sha256(archive.read_bytes()))
    folder = tmp_path / "pets"
    for rel, body in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(body)
    info2 = run(make_cfg(source=str(folder)), tmp_path / "raw2")
    assert info2.kind == "path" and info2.size_bytes == sum(map(len, files.values()))
    assert [i.item_id for i in rawdata.list_items(tmp_path / "raw2")] == sorted(files)
    assert all((folder / rel).read_bytes() == body for rel, body in files.items()), "the user's folder is untouched"
    # The folder's checksum can be pinned like an archive's.
    run(make_cfg(source=str(folder), sha256=info2.sha256), tmp_path / "raw3")
    with pytest.raises(ChecksumMismatch, match="folder's sha256sum manifest"):
        run(make_cfg(source=str(folder), sha256="0" * 64), tmp_path / "raw4")


def test_rerun_is_byte_identical_and_does_not_refetch(http_server, make_cfg, tmp_path):
    data = tar_bytes(sorted(imagefolder().items()), "gz")
    url = http_server.add("/pets.tgz", data)
    cfg = make_cfg(source=url)
    run(cfg, tmp_path / "raw")
    first = (tmp_path / "raw/source.json").read_bytes()
    run(cfg, tmp_path / "raw")  # a forced rerun: served from the verified cache
    assert (tmp_path / "raw/source.json").read_bytes() == first
    assert len(http_server.route("/pets.tgz").requests) == 1
    assert b'"size_bytes": %d' % len(data) in first and sha256(data).encode() in first
    # Pinning a different checksum makes it fetch again (and fail, since the file did not change).
    with pytest.raises(ChecksumMismatch):
        run(make_cfg(source=url, sha256="a" * 64), tmp_path / "raw")
    assert len(http_server.route("/pets.tgz").requests) == 2
    assert (tmp_path / "raw/source.json").read_bytes() == first  # the previous output is intact


@pytest.mark.parametrize("case,match", [
    ("404", r"HTTP 404 Not Found$"),
    ("slip", r"member '\.\./\.\./evil\.png' points outside the destination"),
    ("absolute", r"member '/tmp/evil\.png' has an absolute path"),
    ("symlink", r"symlink 'pets/link' points outside the destination \('/etc/passwd'\)"),
    ("hardlink", r"hard link 'pets/hard' points outside"),
    ("fifo", r"member 'pets/pipe' is a FIFO"),
    ("truncated", r"corrupt or truncated archive"),
    ("corrupt zip", r"corrupt or truncated zip"),
    ("too big", r"max_extract_bytes=300 bytes at member"),
])
def test_failures_leave_no_partial_output(http_server, make_cfg, tmp_path, case, match):
    good = sorted(imagefolder(top="pets").items())
    hostile = {
        "slip": [*good, ("../../evil.png", b"x")],
        "absolute": [*good, ("/tmp/evil.png", b"x")],
        "symlink": [*good, ("pets/link", {"type": tarfile.SYMTYPE, "linkname": "/etc/passwd"})],
        "hardlink": [*good, ("pets/hard", {"type": tarfile.LNKTYPE, "linkname": "../outside"})],
        "fifo": [*good, ("pets/pipe", {"type": tarfile.FIFOTYPE})],
    }
    if case in hostile:
        data = tar_bytes(hostile[case], "gz")
    elif case == "truncated":
        data = tar_bytes(good, "gz")[:-200]
    elif case == "corrupt zip":
        data = zip_bytes(good)[:-60]
    else:
        data = tar_bytes(good, "gz")
    url = http_server.add("/src.tgz", data) if case != "404" else http_server.base_url + "/gone.tgz"
    data_dir = tmp_path / "data"
    (data_dir / "raw").mkdir(parents=True)
    (data_dir / "raw/source.json").write_text("previous\n")
    limit = 300 if case == "too big" else 10**9
    error = UnsafeArchiveError if case in hostile else SourceError
    with pytest.raises(error, match=match) as info:
        run(make_cfg(source=url, max_extract_bytes=limit), data_dir / "raw")
    assert "\n" not in str(info.value) and str(info.value).startswith(url)
    assert sorted(p.name for p in data_dir.iterdir()) == ["raw"]  # no temporary siblings left
    assert [p.name for p in (data_dir / "raw").iterdir()] == ["source.json"]
    assert (data_dir / "raw/source.json").read_text() == "previous\n"
    assert not (tmp_path / "evil.png").exists()


def test_unknown_source_and_empty_archive(make_cfg, tmp_path):
    with pytest.raises(SourceError, match="unknown source 'cifar11'"):
        run(make_cfg(source="cifar11"), tmp_path / "raw")
    empty = tmp_path / "empty.zip"
    empty.write_bytes(zip_bytes([]))
    with pytest.raises(SourceError, match="holds no files"):
        run(make_cfg(source=str(empty)), tmp_path / "raw")


def test_unwritable_cache_fails_cleanly(http_server, make_cfg, tmp_path):
    url = http_server.add("/pets.tgz", tar_bytes(sorted(imagefolder().items()), "gz"))
    (tmp_path / "blocker").write_text("x")
    with pytest.raises(SourceError, match=r"^http://.*/pets\.tgz: (File exists|Not a directory)"):
        run(make_cfg(source=url, cache_dir=tmp_path / "blocker/cache"), tmp_path / "data/raw")
    assert list((tmp_path / "data").iterdir()) == []


def test_digits_still_builtin(make_cfg, tmp_path):
    info = run(make_cfg(), tmp_path / "raw")
    assert info.kind == "builtin" and info.label_file == "labels.csv" and len(info.classes) == 10

