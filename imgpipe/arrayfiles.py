"""Readers for the official dataset formats: CIFAR python pickles and MNIST IDX files.

CIFAR batches are pickles. They are read with an unpickler that resolves only the handful of
globals those files need to rebuild numpy arrays, each wrapped so it can only do that: a pickle
asking for anything else (``os.system``, ``builtins.eval``, a ``__reduce__`` gadget) is refused
before any of it runs, and the admitted globals cannot be turned into allocation bombs or codec
lookups.
"""

from __future__ import annotations

import gzip
import io
import math
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np

from imgpipe.errors import SourceError

# The biggest array _reconstruct may pre-allocate. numpy pickles always ask for shape (0,) and
# fill the data in __setstate__, whose size is bounded by the pickle's own bytes.
_RECONSTRUCT_MAX_ITEMS = 16
# An IDX file whose header promises more than this is refused before it is decompressed.
IDX_MAX_BYTES = 4 * 2**30


class _NDArrayToken:
    """Stands in for ``numpy.ndarray`` inside a pickle: usable as _reconstruct's argument, but
    not callable, so a pickle cannot call ``ndarray(huge_shape)`` directly."""

    def __new__(cls, *args, **kwargs):
        raise pickle.UnpicklingError("numpy.ndarray may only be used through _reconstruct")


def _reconstruct(cls, shape, dtype):
    """numpy's ``_reconstruct`` restricted to a plain, empty ndarray."""
    if cls is not _NDArrayToken:
        raise pickle.UnpicklingError("_reconstruct may only build numpy.ndarray")
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise pickle.UnpicklingError(f"_reconstruct: bad shape {shape!r}")
    if int(np.prod(shape, dtype=np.int64)) > _RECONSTRUCT_MAX_ITEMS:
        raise pickle.UnpicklingError(f"_reconstruct: refused pre-allocation of shape {shape}")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError("numpy scalar: only plain numeric dtypes are admitted")
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise pickle.UnpicklingError("numpy scalar: data does not match its dtype")
    return np.frombuffer(data, dtype=dtype)[0]


def _frombuffer(buf, dtype, shape, order):
    """numpy's protocol-5 array reader, bounded by the buffer the pickle itself carries."""
    if not isinstance(buf, bytes | bytearray | pickle.PickleBuffer) or not isinstance(dtype, np.dtype):
        raise pickle.UnpicklingError("_frombuffer: expected bytes and a dtype")
    if dtype.hasobject or order not in ("C", "F"):
        raise pickle.UnpicklingError("_frombuffer: refused object dtype or bad order")
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order).copy()


def _dtype(spec, align=False, copy=False):
    dtype = np.dtype(spec.decode("latin1") if isinstance(spec, bytes) else spec, align, copy)
    if dtype.hasobject:
        raise pickle.UnpicklingError(f"refused object dtype {dtype}")
    return dtype


def _latin1_encode(text, encoding="utf-8", errors="strict"):
    """Python 3 pickles bytes as ``_codecs.encode(str, "latin1")``; admit only that codec, so a
    pickle cannot trigger arbitrary codec lookups."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise pickle.UnpicklingError(f"_codecs.encode: refused encoding {encoding!r}")
    return text.encode("latin1")


# (module, name) a CIFAR pickle may reference -> what it resolves to. numpy 2 renamed numpy.core
# to numpy._core; pickles written by either spelling are accepted.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): _scalar,
    ("numpy._core.multiarray", "scalar"): _scalar,
    ("numpy", "ndarray"): _NDArrayToken,
    ("numpy", "dtype"): _dtype,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _latin1_encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Admits numpy arrays, lists, dicts, strings, bytes and numbers; nothing else."""

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global '{module}.{name}'") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refused persistent id")


def safe_unpickle(data: bytes, source: str = "<pickle>"):
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise SourceError(f"{source}: unsafe or corrupt pickle: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any failure of a restricted load means a bad file
        raise SourceError(f"{source}: corrupt pickle: {type(exc).__name__}: {exc}") from None


def _key(d: dict, name: str):
    """CIFAR pickles come from Python 2: keys are bytes. Accept str keys too."""
    for key in (name.encode(), name):
        if key in d:
            return d[key]
    raise KeyError(name)


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _int_array(values, path: Path, what: str) -> np.ndarray:
    try:
        arr = np.asarray(values)
        if arr.dtype.kind not in "iu" and not (arr.ndim == 1 and arr.size == 0):
            raise TypeError(f"dtype {arr.dtype}")
        return arr.astype(np.int64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise SourceError(f"{path}: CIFAR {what} must be integers: {exc}") from None


def load_cifar_batch(path: Path | str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[str]]:
    """Read one CIFAR-10 or CIFAR-100 batch file.

    Returns ``(images, labels, coarse_labels, filenames)``: images are ``(N, 32, 32, 3)`` uint8 in
    HWC order, labels are the CIFAR-10 labels or CIFAR-100 fine labels, coarse labels are the
    CIFAR-100 superclasses (``None`` for CIFAR-10).
    """
    path = Path(path)
    obj = safe_unpickle(_read(path), str(path))
    if not isinstance(obj, dict):
        raise SourceError(f"{path}: not a CIFAR batch (a {type(obj).__name__}, expected a dict)")
    try:
        data = _key(obj, "data")
        try:
            labels = _key(obj, "labels")
            coarse = None
        except KeyError:
            labels = _key(obj, "fine_labels")
            coarse = _int_array(_key(obj, "coarse_labels"), path, "coarse labels")
        filenames = [_text(f) for f in _key(obj, "filenames")] if _has(obj, "filenames") else []
    except KeyError as exc:
        raise SourceError(f"{path}: not a CIFAR batch: missing key {exc}") from None
    except TypeError as exc:
        raise SourceError(f"{path}: not a CIFAR batch: {exc}") from None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise SourceError(f"{path}: CIFAR data must be uint8 (N, 3072), got {got}")
    labels = _int_array(labels, path, "labels")
    if labels.shape != (data.shape[0],):
        raise SourceError(f"{path}: {data.shape[0]} images but {labels.shape} labels")
    if coarse is not None and coarse.shape != (data.shape[0],):
        raise SourceError(f"{path}: {data.shape[0]} images but {coarse.shape} coarse labels")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels, coarse, filenames


def _has(d: dict, name: str) -> bool:
    return name.encode() in d or name in d


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from None


def load_cifar_meta(path: Path | str) -> list[str]:
    """Class names from ``batches.meta`` (CIFAR-10) or ``meta`` (CIFAR-100, fine labels)."""
    path = Path(path)
    obj = safe_unpickle(_read(path), str(path))
    for key in ("label_names", "fine_label_names"):
        if isinstance(obj, dict) and _has(obj, key):
            names = _key(obj, key)
            if isinstance(names, list | tuple) and all(isinstance(n, bytes | str) for n in names):
                return [_text(n) for n in names]
            raise SourceError(f"{path}: {key} must be a list of strings")
    raise SourceError(f"{path}: not a CIFAR meta file (no label_names or fine_label_names)")


_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def load_idx(path: Path | str, max_bytes: int = IDX_MAX_BYTES) -> np.ndarray:
    """Read an MNIST IDX file (optionally gzip-compressed) into an array.

    The header is read first and the payload size it declares is checked against ``max_bytes``
    before anything more is decompressed, so a gzip bomb cannot exhaust memory.
    """
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            compressed = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            stream = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
            return _read_idx(stream, path, max_bytes)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise SourceError(f"{path}: corrupt or truncated gzip: {exc or type(exc).__name__}") from None
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _read_exact(stream, size: int) -> bytes:
    """Read ``size`` bytes in bounded chunks (a huge single read would pre-allocate ``size``)."""
    out = bytearray()
    while len(out) < size:
        chunk = stream.read(min(1 << 20, size - len(out)))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def _read_idx(stream, path: Path, max_bytes: int) -> np.ndarray:
    magic = _read_exact(stream, 4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0:
        raise SourceError(f"{path}: not an IDX file (bad magic number)")
    type_code, ndim = magic[2], magic[3]
    if type_code not in _IDX_DTYPES or ndim == 0:
        raise SourceError(f"{path}: not an IDX file (type 0x{type_code:02x}, {ndim} dimensions)")
    dims = _read_exact(stream, 4 * ndim)
    if len(dims) < 4 * ndim:
        raise SourceError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", dims)
    dtype = np.dtype(_IDX_DTYPES[type_code])
    expected = math.prod(shape) * dtype.itemsize  # Python ints: numpy's int64 product can wrap
    if expected > max_bytes:
        raise SourceError(f"{path}: IDX header declares {expected} bytes, over the {max_bytes}-byte limit")
    payload = _read_exact(stream, expected)
    extra = stream.read(1)
    if len(payload) != expected or extra:
        size = f"{len(payload)}+" if extra else str(len(payload))
        raise SourceError(f"{path}: IDX payload is {size} bytes, header says {expected} for shape {shape}")
    try:
        array = np.frombuffer(payload, dtype=dtype).reshape(shape)
    except ValueError:  # found by fuzzing: a 0 beside huge dimensions numpy cannot index
        raise SourceError(f"{path}: IDX header declares an impossible shape {shape}") from None
    return array.astype(dtype.newbyteorder("="))
