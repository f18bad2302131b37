"""Image shards: a few large files holding every preprocessed image.

Two layouts, chosen by ``preprocess.store``:

- ``pixels``: ``shards/shard-NNNNN.npy``, uint8 ``(N, H, W, C)`` arrays, memory-mappable. Small
  images (the default 32x32) read fastest this way and cost only a little more disk than JPEG.
- ``jpeg`` / ``png``: ``shards/shard-NNNNN.bin``, the encoded images one after another, with
  ``shards/shard-NNNNN.idx.npy``, int64 byte boundaries (N + 1 values). At 224x224 a JPEG is a
  tenth of the raw pixels, so a dataset of photographs costs disk in proportion to its JPEGs.
  For ``jpeg`` the preprocess stage hashes and measures the pixels *as decoded from the stored
  bytes*, so the manifest describes exactly what every reader gets.

The manifest's ``shard`` and ``shard_offset`` columns say where each image lives, in both
layouts; :func:`gather` reads either.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imgpipe.contracts import SHARDS_DIR


def shard_name(index: int) -> str:
    return f"{SHARDS_DIR}/shard-{index:05d}.npy"


STORES = ("pixels", "jpeg", "png")


def encoded_shard_name(index: int) -> str:
    return f"{SHARDS_DIR}/shard-{index:05d}.bin"


def encoded_index_name(index: int) -> str:
    return f"{SHARDS_DIR}/shard-{index:05d}.idx.npy"


def is_encoded(preprocessed_dir: Path | str) -> bool:
    """True when the shards hold encoded images (``preprocess.store`` jpeg or png)."""
    return (Path(preprocessed_dir) / encoded_shard_name(0)).is_file()


def encode_image(image: np.ndarray, store: str, quality: int) -> bytes:
    """One ``(H, W, C)`` uint8 image as JPEG (libjpeg-turbo, 4:4:4, deterministic) or PNG."""
    if store == "jpeg":
        import simplejpeg

        gray = image.shape[-1] == 1
        return simplejpeg.encode_jpeg(np.ascontiguousarray(image), quality=quality,
                                      colorspace="GRAY" if gray else "RGB", colorsubsampling="444")
    if store == "png":
        import io

        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, "PNG", compress_level=6)
        return buffer.getvalue()
    raise ValueError(f"unknown store {store!r}")


def decode_image(data: bytes, channels: int) -> np.ndarray:
    """The pixels of one stored image, ``(H, W, channels)`` uint8."""
    if data[:2] == b"\xff\xd8":
        import simplejpeg

        image = simplejpeg.decode_jpeg(data, colorspace="GRAY" if channels == 1 else "RGB")
    else:
        import io

        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            image = np.asarray(im)
    return image.reshape(image.shape[0], image.shape[1], channels)


def as_stored(image: np.ndarray, store: str, quality: int) -> np.ndarray:
    """The pixels ``store`` gives back for ``image``: a JPEG round trip (what the pipeline hashed
    and trained on), the pixels themselves for the lossless stores."""
    if store != "jpeg":
        return image
    return decode_image(encode_image(image, store, quality), image.shape[-1])


class EncodedShard:
    """One encoded shard, read lazily: ``len()``, ``shape`` and ``[i]`` / ``[array]`` like a
    memory-mapped ``.npy`` shard, decoding on access."""

    def __init__(self, preprocessed_dir: Path | str, index: int, image_shape: tuple[int, int, int]) -> None:
        from imgpipe.contracts import read_array

        base = Path(preprocessed_dir)
        self.path = base / encoded_shard_name(index)
        self.bounds = np.asarray(read_array(base / encoded_index_name(index), "preprocess"), dtype=np.int64)
        self.data = np.memmap(self.path, dtype=np.uint8, mode="r") if self.path.stat().st_size else np.zeros(0, np.uint8)
        if len(self.bounds) < 1 or self.bounds[-1] != len(self.data):
            from imgpipe.contracts import _corrupt

            raise _corrupt(self.path, "preprocess", "its index does not match its size")
        self.image_shape = tuple(int(s) for s in image_shape)
        self.shape = (len(self.bounds) - 1, *self.image_shape)

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, i: int) -> np.ndarray:
        raw = bytes(self.data[self.bounds[i]: self.bounds[i + 1]])
        image = decode_image(raw, self.image_shape[-1])
        if image.shape != self.image_shape:
            from imgpipe.contracts import _corrupt

            raise _corrupt(self.path, "preprocess", f"image {i} decodes to {image.shape}, not {self.image_shape}")
        return image

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            return self.read(int(key))
        keys = np.asarray(key, dtype=np.int64)
        out = np.empty((len(keys), *self.image_shape), dtype=np.uint8)
        for j, i in enumerate(keys.tolist()):
            out[j] = self.read(i)
        return out


def stored_image_shape(preprocessed_dir: Path | str) -> tuple[int, int, int]:
    """``(H, W, C)`` of the stored images, from ``info.json``."""
    from imgpipe.contracts import PREPROCESS_INFO_FILE, read_json_output

    info = read_json_output(Path(preprocessed_dir) / PREPROCESS_INFO_FILE, "preprocess")
    return (int(info["size"][0]), int(info["size"][1]), int(info["channels"]))


def open_shard(preprocessed_dir: Path | str, index: int):
    """One shard, read-only: a memory-mapped array, or an :class:`EncodedShard` that decodes on
    access; a corrupt shard is one line naming it."""
    from imgpipe.contracts import read_array

    if is_encoded(preprocessed_dir):
        return EncodedShard(preprocessed_dir, index, stored_image_shape(preprocessed_dir))
    return read_array(Path(preprocessed_dir) / shard_name(index), "preprocess")


def gather(preprocessed_dir: Path | str, shard: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Collect images by (shard, offset) pairs into one in-memory array, in the given order
    (decoding them when the shards are encoded)."""
    shard = np.asarray(shard, dtype=np.int64)
    offset = np.asarray(offset, dtype=np.int64)
    if shard.size == 0:
        raise ValueError("no images to gather")
    first = open_shard(preprocessed_dir, int(shard[0]))
    out = np.empty((shard.size, *first.shape[1:]), dtype=np.uint8)
    for index in np.unique(shard):
        arr = first if index == shard[0] else open_shard(preprocessed_dir, int(index))
        rows = np.nonzero(shard == index)[0]
        # Sorted reads keep memory-mapped access sequential.
        order = np.argsort(offset[rows], kind="stable")
        out[rows[order]] = arr[offset[rows[order]]]
    return out


# Every shard header is padded to this many bytes, so a shard can be streamed to disk with a
# placeholder header and the real image count patched in when it closes.
HEADER_BYTES = 128


def npy_header(shape: tuple[int, ...]) -> bytes:
    """The ``.npy`` (format 1.0) header of a C-order uint8 array of ``shape``, padded to
    :data:`HEADER_BYTES`."""
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": "|u1", "fortran_order": False, "shape": tuple(int(s) for s in shape)}
    )
    header = buffer.getvalue()
    if len(header) != HEADER_BYTES:
        raise ValueError(f"npy header for shape {shape} is {len(header)} bytes, expected {HEADER_BYTES}")
    return header


def shard_capacity(image_shape: tuple[int, int, int], max_bytes: int) -> int:
    """Images per shard so a whole shard file (header included) stays within ``max_bytes``;
    at least one, so an image larger than the limit still gets a shard of its own."""
    per_image = int(np.prod(image_shape))
    return max(1, (int(max_bytes) - HEADER_BYTES) // per_image)


class ShardWriter:
    """Streams uint8 ``(n, H, W, C)`` blocks into bounded ``.npy`` shards under ``out_dir``.

    Only the block being written is in memory, never a whole shard. Shards fill in order, so
    the (shard, offset) of every image depends only on its position in the stream.
    """

    def __init__(self, out_dir: Path | str, image_shape: tuple[int, int, int], max_bytes: int) -> None:
        self.out_dir = Path(out_dir)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.capacity = shard_capacity(self.image_shape, max_bytes)
        self.counts: list[int] = []  # images per shard, closed and open
        self._fh = None

    def add(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Append ``block``; return the (shard, offset) of each of its images."""
        if block.dtype != np.uint8 or tuple(block.shape[1:]) != self.image_shape:
            raise ValueError(f"expected uint8 (n, {self.image_shape}), got {block.dtype} {block.shape}")
        shard = np.empty(len(block), dtype=np.int64)
        offset = np.empty(len(block), dtype=np.int64)
        done = 0
        while done < len(block):
            if self._fh is None or self.counts[-1] == self.capacity:
                self._open_next()
            take = min(len(block) - done, self.capacity - self.counts[-1])
            self._fh.write(np.ascontiguousarray(block[done : done + take]).data)
            shard[done : done + take] = len(self.counts) - 1
            offset[done : done + take] = np.arange(self.counts[-1], self.counts[-1] + take)
            self.counts[-1] += take
            done += take
        return shard, offset

    def _open_next(self) -> None:
        self._close_current()
        path = self.out_dir / shard_name(len(self.counts))
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "wb")  # noqa: SIM115 - kept open across add() calls
        self._fh.write(b"\0" * HEADER_BYTES)
        self.counts.append(0)

    def _close_current(self) -> None:
        if self._fh is None:
            return
        self._fh.seek(0)
        self._fh.write(npy_header((self.counts[-1], *self.image_shape)))
        self._fh.close()
        self._fh = None

    def close(self) -> list[dict]:
        """Finish the last shard; return ``[{"file", "images"}]`` for every shard."""
        self._close_current()
        return [{"file": shard_name(i), "images": n} for i, n in enumerate(self.counts)]

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close_current()


class EncodedShardWriter:
    """Streams encoded images into bounded ``.bin`` shards plus their ``.idx.npy`` byte index;
    the (shard, offset) of every image depends only on its position in the stream."""

    def __init__(self, out_dir: Path | str, max_bytes: int) -> None:
        self.out_dir = Path(out_dir)
        self.max_bytes = int(max_bytes)
        self.counts: list[int] = []
        self._bounds: list[int] = []
        self._fh = None

    def add(self, encoded: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
        shard = np.empty(len(encoded), dtype=np.int64)
        offset = np.empty(len(encoded), dtype=np.int64)
        for j, data in enumerate(encoded):
            if self._fh is None or (self.counts[-1] and self._bounds[-1] + len(data) > self.max_bytes):
                self._open_next()
            self._fh.write(data)
            self._bounds.append(self._bounds[-1] + len(data))
            shard[j] = len(self.counts) - 1
            offset[j] = self.counts[-1]
            self.counts[-1] += 1
        return shard, offset

    def _open_next(self) -> None:
        self._close_current()
        path = self.out_dir / encoded_shard_name(len(self.counts))
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "wb")  # noqa: SIM115 - kept open across add() calls
        self._bounds = [0]
        self.counts.append(0)

    def _close_current(self) -> None:
        if self._fh is None:
            return
        self._fh.close()
        self._fh = None
        np.save(self.out_dir / encoded_index_name(len(self.counts) - 1), np.asarray(self._bounds, dtype=np.int64))

    def close(self) -> list[dict]:
        self._close_current()
        return [{"file": encoded_shard_name(i), "images": n} for i, n in enumerate(self.counts)]

    def __enter__(self) -> EncodedShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close_current()
