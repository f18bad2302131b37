"""The images of one split wherever they are stored, read by row: what train, evaluate and every
later reader use instead of a second copy of the pixels.

The augment stage writes, per split, an index (``{split}_items.parquet``): for every row its item,
label, and where its pixels live: a shard and a position in ``data/preprocessed`` (the original
images), or in augment's own shards (offline augmented copies, stored the way preprocess stores
the originals). :class:`StoredImages` reads rows of that index like a memory-mapped uint8
``(N, H, W, C)`` array:

- ``x[i]`` is one image, ``x[idx]`` (an index array) one in-memory batch, ``x[a:b:s]`` a lazy view,
  ``np.asarray(x)`` everything;
- pixel shards (``.npy``) are memory-mapped and a batch is one fancy-index read per shard: the
  fast path, as fast as the old ``{split}_x.npy`` arrays;
- encoded shards (JPEG/PNG ``.bin``) decode on access; :class:`BatchReader` decodes whole batches in
  DataLoader worker processes, in the order asked, so what a consumer gets (and the weights trained
  on it) does not depend on the worker count.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

# Values of the index's PIXELS_IN column: which directory's shards hold a row's pixels.
IN_PREPROCESSED = "preprocessed"
IN_AUGMENTED = "augmented"
_DIRS = (IN_PREPROCESSED, IN_AUGMENTED)


class StoredImages:
    """uint8 images addressed by ``(directory, shard, offset)`` per row; see the module docstring."""

    def __init__(self, dirs: dict[str, Path], where: np.ndarray, shard: np.ndarray, offset: np.ndarray,
                 image_shape: tuple[int, int, int], encoded: bool) -> None:
        self.dirs = {k: Path(v) for k, v in dirs.items()}
        self.where = np.asarray(where, dtype=np.int8)  # index into _DIRS
        self.shard = np.asarray(shard, dtype=np.int64)
        self.offset = np.asarray(offset, dtype=np.int64)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.encoded = bool(encoded)
        # One key per (directory, shard): a batch groups its rows by it.
        self._key = self.where.astype(np.int64) * (1 << 40) + self.shard
        self._open: dict[int, object] = {}

    # -- array-like surface ------------------------------------------------------------------------
    dtype = np.dtype(np.uint8)
    ndim = 4

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.shard), *self.image_shape)

    def __len__(self) -> int:
        return len(self.shard)

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            i = int(key)
            if not -len(self) <= i < len(self):
                raise IndexError(f"row {i} out of range for {len(self)} images")
            return self.read(np.array([i % len(self)]))[0]
        if isinstance(key, slice):
            return self.subset(np.arange(len(self))[key])
        return self.read(np.asarray(key, dtype=np.int64))

    def __array__(self, dtype=None, copy=None):
        out = self.read(np.arange(len(self)))
        return out if dtype is None else out.astype(dtype)

    def __getstate__(self) -> dict:
        # Open memory maps are not sent to worker processes (pickling one copies its data).
        return {**self.__dict__, "_open": {}}

    def subset(self, rows: np.ndarray) -> StoredImages:
        """A lazy view of ``rows`` (no pixels read)."""
        view = object.__new__(StoredImages)
        view.__dict__.update(self.__dict__)
        view.where, view.shard, view.offset = self.where[rows], self.shard[rows], self.offset[rows]
        view._key = self._key[rows]
        return view

    @staticmethod
    def concat(parts: list[StoredImages]) -> StoredImages:
        """One lazy view reading the rows of ``parts`` in turn (no pixels read); the parts must
        read the same stores (the splits of one augment output do)."""
        first = parts[0]
        if len(parts) == 1:
            return first
        if any(p.dirs != first.dirs or p.image_shape != first.image_shape or p.encoded != first.encoded
               for p in parts[1:]):
            raise ValueError("the splits are not read from the same image stores")
        return StoredImages(first.dirs, np.concatenate([p.where for p in parts]),
                            np.concatenate([p.shard for p in parts]), np.concatenate([p.offset for p in parts]),
                            first.image_shape, first.encoded)

    def check(self) -> None:
        """Raise ``ValueError`` naming the first row that points outside its shard (a stale index)."""
        for key in np.unique(self._key):
            rows = np.nonzero(self._key == key)[0]
            size = len(self._shard(int(key)))
            bad = rows[(self.offset[rows] < 0) | (self.offset[rows] >= size)]
            if len(bad):
                raise ValueError(f"row {int(bad[0])} points at image {int(self.offset[bad[0]])} of "
                                 f"{_DIRS[int(key) >> 40]} shard {int(key) & ((1 << 40) - 1)}, which holds {size}")

    # -- reads ---------------------------------------------------------------------------------------
    def _shard(self, key: int):
        arr = self._open.get(key)
        if arr is None:
            from imgpipe.contracts import read_array
            from imgpipe.preprocess.shards import EncodedShard, shard_name

            # Augment's copies are stored like preprocess's shards, so one layout serves both.
            base, index = self.dirs[_DIRS[key >> 40]], key & ((1 << 40) - 1)
            stage = "preprocess" if key >> 40 == 0 else "augment"
            arr = (EncodedShard(base, index, self.image_shape) if self.encoded
                   else read_array(base / shard_name(index), stage))
            self._open[key] = arr
        return arr

    def read(self, rows: np.ndarray) -> np.ndarray:
        """The images of ``rows`` (any order), uint8 ``(len(rows), H, W, C)`` in memory."""
        rows = np.asarray(rows, dtype=np.int64)
        keys, offsets = self._key[rows], self.offset[rows]
        if len(rows) and (keys == keys[0]).all():  # the common case: one shard, one read
            return np.ascontiguousarray(self._shard(int(keys[0]))[offsets])
        out = np.empty((len(rows), *self.image_shape), dtype=np.uint8)
        for key in np.unique(keys):
            at = np.nonzero(keys == key)[0]
            out[at] = self._shard(int(key))[offsets[at]]
        return out


def stored_images(index, preprocessed_dir: Path | str, augmented_dir: Path | str) -> StoredImages:
    """:class:`StoredImages` for the rows of an augment index table (``{split}_items.parquet``)."""
    from imgpipe import contracts as c
    from imgpipe.preprocess.shards import is_encoded, stored_image_shape

    where = index[c.PIXELS_IN].astype(str).to_numpy()
    unknown = sorted(set(where) - set(_DIRS))
    if unknown:
        raise ValueError(f"unknown {c.PIXELS_IN} value(s) {unknown[:3]} (expected {'/'.join(_DIRS)})")
    codes = np.where(where == IN_AUGMENTED, 1, 0).astype(np.int8)
    return StoredImages({IN_PREPROCESSED: Path(preprocessed_dir), IN_AUGMENTED: Path(augmented_dir)}, codes,
                        index[c.SHARD].to_numpy(np.int64), index[c.SHARD_OFFSET].to_numpy(np.int64),
                        stored_image_shape(preprocessed_dir), is_encoded(preprocessed_dir))


def load_split(augmented_dir: Path | str, split: str, preprocessed_dir: Path | str | None = None):
    """One split of the augment stage's output as ``contracts.SplitArrays``: images (read from the shards on access, whatever
    ``preprocess.store`` chose) and label indices. ``preprocessed_dir`` defaults to the one the
    augment stage read (its ``meta.json``)."""
    from imgpipe.contracts import (
        AUGMENTED_META_FILE,
        LABEL_INDEX,
        PIXELS_IN,
        SHARD,
        SHARD_OFFSET,
        SplitArrays,
        _corrupt,
        read_json_output,
        read_table,
        split_items_file,
    )

    augmented_dir = Path(augmented_dir)
    if preprocessed_dir is None:
        preprocessed_dir = read_json_output(augmented_dir / AUGMENTED_META_FILE, "augment").get("preprocessed")
        if not preprocessed_dir:
            raise _corrupt(augmented_dir / AUGMENTED_META_FILE, "augment", "it does not say where the images are")
    index_path = augmented_dir / split_items_file(split)
    index = read_table(index_path, "augment")
    missing = [col for col in (LABEL_INDEX, PIXELS_IN, SHARD, SHARD_OFFSET) if col not in index.columns]
    if missing:
        raise _corrupt(index_path, "augment", f"no {', '.join(missing)} column")
    try:
        x = stored_images(index, preprocessed_dir, augmented_dir)
        x.check()
    except ValueError as exc:
        raise _corrupt(index_path, "augment", str(exc)) from None
    return SplitArrays(x, np.array(index[LABEL_INDEX], dtype=np.int64))  # writable: torch takes it


# -- batch reads in worker processes ---------------------------------------------------------------


def resolve_workers(setting: int | str, images) -> int:
    """Decode workers for ``images``: ``auto`` is none for raw pixels and for in-memory arrays
    (a memory-mapped read is faster than handing batches between processes), and for encoded
    stores one per core but one, at most 4 (the training process keeps a core)."""
    if setting != "auto":
        return int(setting)
    if not getattr(images, "encoded", False):
        return 0
    return max(1, min(4, (os.cpu_count() or 1) - 1))


class _Batches:
    """The DataLoader's sampler: yields whatever list of index arrays it is given next."""

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class _Decode:
    """The DataLoader's dataset: one key = one sorted batch of rows, decoded in a worker."""

    def __init__(self, images) -> None:
        self.images = images

    def __getitem__(self, rows):
        import torch

        return torch.from_numpy(_read(self.images, rows))

    def __len__(self) -> int:
        return len(self.images)


def _read(images, rows: np.ndarray) -> np.ndarray:
    if isinstance(images, StoredImages):
        return images.read(rows)
    return np.ascontiguousarray(images[rows])


class BatchReader:
    """Yields the images of each batch (index arrays) as uint8 tensors, in the order given.

    With ``workers > 0`` batches decode in that many DataLoader worker processes (started once,
    kept for every later call); the order is the caller's, so results do not depend on the count.
    """

    def __init__(self, images, workers: int = 0) -> None:
        self.images = images
        self.workers = int(workers)
        self._sampler = _Batches()
        self._loader = None

    def __call__(self, batches: Iterable[np.ndarray]) -> Iterator:
        import torch

        batches = [np.asarray(b, dtype=np.int64) for b in batches]
        if self.workers <= 0 or len(batches) <= 1:
            for rows in batches:
                yield torch.from_numpy(_read(self.images, rows))
            return
        if self._loader is None:
            from torch.utils.data import DataLoader

            self._loader = DataLoader(_Decode(self.images), batch_size=None, sampler=self._sampler,
                                      num_workers=self.workers, persistent_workers=True,
                                      prefetch_factor=2, collate_fn=_identity)
        self._sampler.batches = batches
        yield from self._loader

    def close(self) -> None:
        """Stop the worker processes (also done when the reader is garbage-collected)."""
        self._loader = None

    def __enter__(self) -> BatchReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _identity(batch):
    return batch


def sequential_batches(n: int, batch_size: int) -> list[np.ndarray]:
    """``[0, batch_size), [batch_size, 2 * batch_size), ...`` up to ``n``."""
    return [np.arange(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
