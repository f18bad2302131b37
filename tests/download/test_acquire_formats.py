"""The official-format readers: restricted unpickling of CIFAR batches and bounded IDX reading."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
from archives import CIFAR10_NAMES, RunsCode, cifar_images, idx_bytes, py2_pickle

from imgpipe import arrayfiles
from imgpipe.errors import SourceError


def test_cifar_batch_in_python2_layout_loads(tmp_path):
    data = cifar_images(3, 0)
    path = tmp_path / "data_batch_1"
    path.write_bytes(py2_pickle({b"batch_label": b"training batch 1 of 5", b"labels": [2, 0, 9],
                                 b"data": data, b"filenames": [b"a.png", b"b.png", b"c.png"]}))
    images, labels, coarse, names = arrayfiles.load_cifar_batch(path)
    assert images.shape == (3, 32, 32, 3) and images.dtype == np.uint8
    # CHW planes in the file become HWC: the first pixel's R, G, B are at 0, 1024, 2048.
    assert images[0, 0, 0].tolist() == [data[0, 0], data[0, 1024], data[0, 2048]]
    assert labels.tolist() == [2, 0, 9] and coarse is None and names == ["a.png", "b.png", "c.png"]


def test_cifar100_batch_and_meta(tmp_path):
    batch = tmp_path / "train"
    batch.write_bytes(py2_pickle({b"fine_labels": [5, 99], b"coarse_labels": [1, 19],
                                  b"data": cifar_images(2, 1), b"filenames": [b"x", b"y"]}))
    _images, labels, coarse, _ = arrayfiles.load_cifar_batch(batch)
    assert labels.tolist() == [5, 99] and coarse.tolist() == [1, 19]
    meta = tmp_path / "batches.meta"
    meta.write_bytes(py2_pickle({b"label_names": [n.encode() for n in CIFAR10_NAMES], b"num_vis": 3072}))
    assert arrayfiles.load_cifar_meta(meta) == CIFAR10_NAMES


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_python3_pickles_of_every_protocol_load(tmp_path, protocol):
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps({"data": cifar_images(2, 3), "labels": [1, 2]}, protocol=protocol))
    images, labels, _, _ = arrayfiles.load_cifar_batch(path)
    assert images.shape == (2, 32, 32, 3) and labels.tolist() == [1, 2]


def test_malicious_reduce_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": RunsCode(f"touch {marker}")}, protocol=2))
    with pytest.raises(SourceError, match=r"refused global '(posix|os)\.system'"):
        arrayfiles.load_cifar_batch(path)
    assert not marker.exists()
    # Sanity: the gadget really does run under plain pickle.
    pickle.loads(path.read_bytes())
    assert marker.exists()


@pytest.mark.parametrize("payload", [
    b"cbuiltins\neval\n(S'1+1'\ntR.",
    b"cos\nsystem\n(S'true'\ntR.",
    b"c__builtin__\ngetattr\n(cnumpy\nndarray\nS'__new__'\ntR.",
    b"cnumpy\nload\n(S'x'\ntR.",
])
def test_other_globals_are_refused(payload):
    with pytest.raises(SourceError, match="refused global"):
        arrayfiles.safe_unpickle(payload, "evil")


def test_admitted_globals_cannot_be_abused():
    # ndarray may not be called directly (an allocation bomb) ...
    with pytest.raises(SourceError, match="unsafe or corrupt pickle"):
        arrayfiles.safe_unpickle(b"\x80\x02cnumpy\nndarray\n(J\x00\xe1\xf5\x05\x85tR.")
    # ... nor _reconstruct asked for a huge array ...
    bomb = b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nJ\x00\xe1\xf5\x05\x85U\x01b\x87R."
    with pytest.raises(SourceError, match="refused pre-allocation"):
        arrayfiles.safe_unpickle(bomb)
    # ... nor _codecs.encode used for another codec ...
    with pytest.raises(SourceError, match="refused encoding"):
        arrayfiles.safe_unpickle(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x05\x00\x00\x00rot13\x86R.")
    # ... and object arrays, which could smuggle arbitrary objects, are refused.
    with pytest.raises(SourceError, match="object dtype"):
        arrayfiles.safe_unpickle(pickle.dumps(np.array([1, "a"], dtype=object), protocol=2))
    with pytest.raises(SourceError, match="persistent"):
        arrayfiles.safe_unpickle(b"\x80\x02U\x01xQ.")


@pytest.mark.parametrize("obj,match", [
    ([1, 2], "not a CIFAR batch"),
    ({b"labels": [1]}, "missing key"),
    ({b"data": np.zeros((2, 10), np.uint8), b"labels": [1, 2]}, r"uint8 \(N, 3072\)"),
    ({b"data": cifar_images(2, 0), b"labels": [1]}, "2 images but"),
    ({b"data": cifar_images(1, 0), b"labels": [b"cat"]}, "must be integers"),
])
def test_malformed_cifar_batches_fail_clearly(tmp_path, obj, match):
    path = tmp_path / "batch"
    path.write_bytes(py2_pickle(obj))
    with pytest.raises(SourceError, match=match):
        arrayfiles.load_cifar_batch(path)


def test_truncated_pickle_is_a_clear_error(tmp_path):
    path = tmp_path / "batch"
    path.write_bytes(py2_pickle({b"data": cifar_images(2, 0), b"labels": [1, 2]})[:-100])
    with pytest.raises(SourceError, match="corrupt pickle"):
        arrayfiles.load_cifar_batch(path)


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_idx_plain_and_gzip(tmp_path):
    arr = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    plain = _write(tmp_path, "a-idx3-ubyte", idx_bytes(arr))
    packed = _write(tmp_path, "a-idx3-ubyte.gz", gzip.compress(idx_bytes(arr)))
    assert (arrayfiles.load_idx(plain) == arr).all() and (arrayfiles.load_idx(packed) == arr).all()


@pytest.mark.parametrize("mangle,match", [
    (lambda b: gzip.compress(b)[:-30], "corrupt or truncated gzip"),
    (lambda b: gzip.compress(b)[:-8] + b"\xde\xad\xbe\xef" + gzip.compress(b)[-4:], "corrupt or truncated gzip"),
    (lambda b: b"\x01\x02" + b[2:], "bad magic"),
    (lambda b: b[:-5], "IDX payload is"),
    (lambda b: b + b"\x00", "IDX payload is"),
    (lambda b: b[:6], "truncated IDX header"),
])
def test_idx_damage_is_a_clear_error(tmp_path, mangle, match):
    data = idx_bytes(np.zeros((3, 4, 4), np.uint8))
    with pytest.raises(SourceError, match=match):
        arrayfiles.load_idx(_write(tmp_path, "x.gz", mangle(data)))


def test_idx_header_bomb_is_refused_before_decompressing(tmp_path):
    header = bytes([0, 0, 8, 3]) + struct.pack(">3I", 60000, 2**16, 2**16)
    path = _write(tmp_path, "bomb.gz", gzip.compress(header + b"\x00" * 1000))
    with pytest.raises(SourceError, match="over the .*-byte limit"):
        arrayfiles.load_idx(path)
