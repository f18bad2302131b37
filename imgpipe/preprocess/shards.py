"""Pixel shards: a few ``.npy`` files of uint8 ``(N, H, W, C)`` arrays, memory-mappable.

The manifest's ``shard`` and ``shard_offset`` columns say where each image lives.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imgpipe.contracts import SHARDS_DIR


def shard_name(index: int) -> str:
    return f"{SHARDS_DIR}/shard-{index:05d}.npy"


def open_shard(preprocessed_dir: Path | str, index: int) -> np.ndarray:
    """Memory-map one shard read-only; a corrupt shard is one line naming it."""
    from imgpipe.contracts import read_array

    return read_array(Path(preprocessed_dir) / shard_name(index), "preprocess")


def gather(preprocessed_dir: Path | str, shard: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Collect images by (shard, offset) pairs into one in-memory array, in the given order."""
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
