"""Builders of small archives in each official byte layout, and of hostile ones, for the tests.

- CIFAR-10/100 python tarballs whose pickles are written the way the originals were (Python 2,
  protocol 2: ``str`` as BINSTRING, numpy arrays via ``numpy.core.multiarray._reconstruct``).
- MNIST IDX files, gzip-compressed.
- ImageFolder trees (optionally under split folders) and images plus a CSV, as tar, tar.gz, zip.
- Tar and zip members that try to escape or are not plain files.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import tarfile
import zipfile

import numpy as np

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# Python 2 style pickles


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler lets us choose the opcodes
    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else bytes(obj)
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str


def py2_pickle(obj) -> bytes:
    """``obj`` pickled as Python 2's cPickle wrote CIFAR (protocol 2, byte strings, numpy.core)."""
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def cifar_images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3072), dtype=np.uint8)


def cifar10_tarball(per_batch: int = 4, classes: list[str] | None = None, batch_override: bytes | None = None) -> bytes:
    """A ``cifar-10-python.tar.gz`` in the official layout with ``per_batch`` images per batch."""
    classes = classes or CIFAR10_NAMES
    files = {"cifar-10-batches-py/batches.meta": py2_pickle(
        {b"num_cases_per_batch": per_batch, b"label_names": [c.encode() for c in classes], b"num_vis": 3072})}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(names):
        batch_label = f"training batch {i + 1} of 5" if i < 5 else "testing batch 1 of 1"
        files[f"cifar-10-batches-py/{name}"] = py2_pickle({
            b"batch_label": batch_label.encode(),
            b"labels": [(i + j) % len(classes) for j in range(per_batch)],
            b"data": cifar_images(per_batch, i),
            b"filenames": [f"img_{i}_{j}.png".encode() for j in range(per_batch)],
        })
    if batch_override is not None:
        files["cifar-10-batches-py/data_batch_1"] = batch_override
    files["cifar-10-batches-py/readme.html"] = b"<html>CIFAR-10</html>\n"
    return tar_bytes(sorted(files.items()), compression="gz", dirs=["cifar-10-batches-py"])


def cifar100_tarball(per_split: int = 5) -> bytes:
    fine = [f"fine{i}" for i in range(100)]
    coarse = [f"coarse{i}" for i in range(20)]
    files = {"cifar-100-python/meta": py2_pickle(
        {b"fine_label_names": [f.encode() for f in fine], b"coarse_label_names": [c.encode() for c in coarse]})}
    for i, name in enumerate(["train", "test"]):
        files[f"cifar-100-python/{name}"] = py2_pickle({
            b"filenames": [f"{name}_{j}.png".encode() for j in range(per_split)],
            b"batch_label": f"{name}ing batch 1 of 1".encode(),
            b"fine_labels": [(7 * j) % 100 for j in range(per_split)],
            b"coarse_labels": [(7 * j) % 20 for j in range(per_split)],
            b"data": cifar_images(per_split, 10 + i),
        })
    return tar_bytes(sorted(files.items()), compression="gz", dirs=["cifar-100-python"])


class RunsCode:
    """A pickle gadget: unpickling it would call os.system / write a marker file."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))


# ---------------------------------------------------------------------------------------------
# IDX


def idx_bytes(array: np.ndarray) -> bytes:
    codes = {np.dtype(np.uint8): 0x08}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def mnist_files(n_train: int = 6, n_test: int = 4, seed: int = 0) -> dict[str, bytes]:
    """The four gzip IDX files, named as published."""
    rng = np.random.default_rng(seed)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        out[f"{prefix}-images-idx3-ubyte.gz"] = gzip.compress(idx_bytes(images), mtime=0)
        out[f"{prefix}-labels-idx1-ubyte.gz"] = gzip.compress(idx_bytes(labels), mtime=0)
    return out


# ---------------------------------------------------------------------------------------------
# Images and generic archives


def png(seed: int, size: int = 8) -> bytes:
    from PIL import Image

    arr = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="PNG")
    return buf.getvalue()


def imagefolder(classes=("cat", "dog"), per_class: int = 2, splits=None, top: str | None = None) -> dict[str, bytes]:
    files = {}
    for split in splits or [None]:
        for cls in classes:
            for j in range(per_class):
                parts = [p for p in (top, split, cls, f"{cls}_{j}.png") if p]
                files["/".join(parts)] = png(len(files))
    return files


def images_with_csv(n: int = 4, top: str | None = "data") -> dict[str, bytes]:
    prefix = f"{top}/" if top else ""
    files = {f"{prefix}images/img_{i}.png": png(100 + i) for i in range(n)}
    rows = "".join(f"images/img_{i}.png,{'ab'[i % 2]}\n" for i in range(n))
    files[f"{prefix}labels.csv"] = ("file,label\n" + rows).encode()
    return files


def tar_bytes(members, compression: str = "", dirs=()) -> bytes:
    """``members``: (name, bytes) or (name, TarInfo-ish dict with a 'type' and link/size fields)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=f"w:{compression}" if compression else "w") as tf:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tf.addfile(info)
        for name, body in members:
            info = tarfile.TarInfo(name)
            if isinstance(body, dict):
                info.type = body["type"]
                info.linkname = body.get("linkname", "")
                info.devmajor, info.devminor = body.get("dev", (0, 0))
                tf.addfile(info)
            else:
                info.size = len(body)
                info.mode = 0o644
                tf.addfile(info, io.BytesIO(body))
    data = buf.getvalue()
    if compression == "gz":  # tarfile writes the current time into the gzip header; pin it
        data = data[:4] + b"\x00\x00\x00\x00" + data[8:]
    return data


def zip_bytes(members, symlinks=None, special=None) -> bytes:
    """``symlinks``: {name: target}; ``special``: {name: st_mode} for FIFOs/devices."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, body in members:
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o100644 << 16)
            zf.writestr(info, body)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, target)
        for name, mode in (special or {}).items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = (mode << 16)
            zf.writestr(info, b"")
    return buf.getvalue()


def zip_bomb(total_mb: int = 64) -> bytes:
    """One member of ``total_mb`` MiB of zeros: a few tens of KiB compressed."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf, \
            zf.open("zeros.bin", "w", force_zip64=True) as fh:
        block = b"\x00" * (1 << 20)
        for _ in range(total_mb):
            fh.write(block)
    return buf.getvalue()


def gzip_tar_bomb(total_mb: int = 64) -> bytes:
    """A tar.gz with one member of ``total_mb`` MiB of zeros."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tf:
        info = tarfile.TarInfo("zeros.bin")
        info.size = total_mb << 20
        tf.addfile(info, io.BytesIO(b"\x00" * info.size))
    return gzip.compress(raw.getvalue(), compresslevel=9, mtime=0)
