"""Bounded memory for the validate stage: pixels read a chunk at a time, features that may spill.

A check never holds every image's pixels. It maps a top-level function over chunks of rows
(:meth:`PixelSource.map`), each chunk read from the shards just before its function runs; what
comes back per image is small (a 7x7 colour embedding, a pooled raster, k-means features) and is
collected into arrays, or into a :class:`RowStore` that moves to a temporary file when it would
take more than :data:`IN_MEMORY_BYTES`. The global step (the LSH search, the K-fold probe, the
robust fit) then runs on those small arrays.

Chunk sizes are set in bytes of pixels (:func:`rows_per_chunk`), so 224-pixel images come in
chunks of a few dozen and 32-pixel ones in thousands. Every per-chunk function computes each
image's row independently of the others in its chunk, so the results are the same bytes whatever
the chunk size (tested against the all-at-once path).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator

import numpy as np

CHUNK_BYTES = 12 << 20  # pixels read per chunk: 4,096 images of 32x32x3, 83 of 224x224x3
IN_MEMORY_BYTES = 256 << 20  # a feature table larger than this lives in a temporary file
READ_ROWS_BYTES = 32 << 20  # a RowStore on disk is read back in blocks of about this size
# Exact embeddings (both near-duplicate passes) up to this stay in memory: 26,000 images of the crop
# pass's 2.5 KB rows, 114,000 of the first pass's 588 B ones.
EXACT_IN_MEMORY_BYTES = 64 << 20
GATHER_ROWS = 4096  # exact rows read back at a time: bounds the read buffer (10 MB of crop-pass rows)


def rows_per_chunk(image_shape: tuple[int, ...], budget: int = CHUNK_BYTES, cap: int | None = None) -> int:
    """Images per chunk so a chunk's pixels take about ``budget`` bytes (at least one)."""
    rows = max(1, int(budget) // max(1, int(np.prod(image_shape))))
    return min(rows, cap) if cap else rows


class PixelSource:
    """The pixels of some rows, read on demand: ``n`` images of ``shape`` ``(H, W, C)``.

    ``loader(positions)`` returns the ``(k, H, W, C)`` uint8 pixels of those positions (positions in
    the caller's row table); ``positions`` picks and orders the rows this source covers.
    ``engine`` (optional) runs :meth:`map`'s chunks elsewhere (``imgpipe.validate.engine``)."""

    def __init__(self, loader: Callable[[np.ndarray], np.ndarray], positions: np.ndarray,
                 shape: tuple[int, int, int], engine=None) -> None:
        self.loader = loader
        self.positions = np.asarray(positions, dtype=np.int64)
        self.shape = tuple(int(s) for s in shape)
        self.engine = engine

    @property
    def n(self) -> int:
        return len(self.positions)

    def __len__(self) -> int:
        return self.n

    def subset(self, index: np.ndarray) -> PixelSource:
        """The rows at ``index`` (positions within this source)."""
        return PixelSource(self.loader, self.positions[np.asarray(index, dtype=np.int64)], self.shape, self.engine)

    def read(self, index: np.ndarray) -> np.ndarray:
        """Pixels of the rows at ``index`` (positions within this source), in that order."""
        index = np.asarray(index, dtype=np.int64)
        if not len(index):
            return np.zeros((0, *self.shape), np.uint8)
        return self.loader(self.positions[index])

    def map(self, fn: Callable, rows: int, **kwargs) -> Iterator[tuple[int, int, object]]:
        """``(start, stop, fn(pixels, start, **kwargs))`` for consecutive chunks of ``rows``
        images, in order. ``fn`` must be a top-level function (an engine may run it in another
        process); what it returns should be small."""
        rows = max(1, int(rows))
        bounds = [(s, min(s + rows, self.n)) for s in range(0, self.n, rows)]
        if self.engine is not None:
            yield from self.engine.map_chunks(self, fn, bounds, kwargs)
            return
        for start, stop in bounds:
            yield start, stop, fn(self.loader(self.positions[start:stop]), start, **kwargs)


def array_source(pixels: np.ndarray) -> PixelSource:
    """A :class:`PixelSource` over an in-memory ``(N, H, W, C)`` array (tests, small data)."""
    pixels = np.asarray(pixels)
    return PixelSource(lambda pos: pixels[pos], np.arange(len(pixels)), pixels.shape[1:])


def as_source(pixels) -> PixelSource:
    return pixels if isinstance(pixels, PixelSource) else array_source(pixels)


class RowStore:
    """An ``(n, dim)`` table filled chunk by chunk: in memory while it is small, else in a
    temporary file read back in blocks (explicit reads, not a memory map, so pages read do not
    stay in the process's resident set). Supports ``store[a:b]`` and ``store[sorted positions]``
    as an array would, ``len``, ``shape`` and ``dtype``; the values read back are the same bytes
    that were written."""

    def __init__(self, n: int, dim: int, dtype=np.float32, in_memory_bytes: int | None = None) -> None:
        self.dtype = np.dtype(dtype)
        self.shape = (int(n), int(dim))
        self.row_bytes = self.dtype.itemsize * int(dim)
        limit = IN_MEMORY_BYTES if in_memory_bytes is None else in_memory_bytes
        self._array: np.ndarray | None = None
        self._fd: int | None = None
        if n * self.row_bytes <= limit:
            self._array = np.zeros(self.shape, self.dtype)
        else:
            fd, path = tempfile.mkstemp(prefix="imgpipe-validate-", suffix=".rows")
            os.unlink(path)  # gone when closed, even if the stage dies
            os.ftruncate(fd, n * self.row_bytes)
            self._fd = fd

    @property
    def on_disk(self) -> bool:
        return self._fd is not None

    def __len__(self) -> int:
        return self.shape[0]

    def __setitem__(self, key: slice, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if self._array is not None:
            self._array[key] = block
            return
        start = key.start or 0
        data = memoryview(block).cast("B")
        offset = start * self.row_bytes
        while len(data):
            written = os.pwrite(self._fd, data, offset)
            data, offset = data[written:], offset + written

    def _read_span(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, self.shape[1]), self.dtype)
        _pread_into(self._fd, memoryview(out).cast("B"), start * self.row_bytes)
        return out

    def __getitem__(self, key) -> np.ndarray:
        if self._array is not None:
            return self._array[key]
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            return self._read_span(start, stop)[::step] if step != 1 else self._read_span(start, stop)
        index = np.asarray(key, dtype=np.int64)
        out = np.empty((len(index), self.shape[1]), self.dtype)
        block = max(1, READ_ROWS_BYTES // max(self.row_bytes, 1))
        order = np.argsort(index, kind="stable")
        done = 0
        while done < len(index):  # contiguous spans of at most ``block`` rows, in position order
            first = index[order[done]]
            end = int(np.searchsorted(index[order], first + block, side="left"))
            span = self._read_span(int(first), int(index[order[end - 1]]) + 1)
            out[order[done:end]] = span[index[order[done:end]] - first]
            done = end
        return out

    def array(self) -> np.ndarray:
        """The whole table in memory (only where it is known to be small)."""
        return self._array if self._array is not None else self[0:self.shape[0]]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._array = None

    def __enter__(self) -> RowStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - the stage closes it; this is the safety net
        with contextlib.suppress(Exception):
            self.close()


def quantise(emb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """int8 codes, per-row scale and an upper bound of each row's L2 error (float32): ``codes *
    scale`` is within ``bound`` of ``emb`` (the bound rounded up, so it holds in float32 too)."""
    top = np.abs(emb).max(axis=1).astype(np.float64)
    scale = (np.maximum(top, 1e-12) / 127.0).astype(np.float32)
    codes = np.clip(np.round(emb / scale[:, None]), -127, 127).astype(np.int8)
    err = np.sqrt(((emb.astype(np.float64) - codes * scale[:, None].astype(np.float64)) ** 2).sum(axis=1))
    return codes, scale, np.nextafter((err * (1 + 1e-6)).astype(np.float32), np.float32(np.inf))


# The first filter of a near-duplicate candidate (both passes): its similarity bounded from the
# indexed embeddings' first PROJECTED_DIMS principal directions (int8, 44 bytes per image) and the
# length of what they leave out. At a million generated 32x32 images the crop pass met ~70 million
# bucket entries per 2,048-image block, 0.1% of them near enough, and gathering each one's 192-byte
# int8 codes took 80% of its time; this bound lets 1.6% of them through to the int8 filter.
PROJECTED_DIMS = 32
BASIS_SAMPLE = 16384  # embeddings (spread evenly over the indexed rows) the directions come from
_RECORD_FLOATS = 3  # per image after its codes: scale, slack, residual length (float32)


def _up(values) -> np.ndarray:
    """float32, rounded up (a bound stays a bound)."""
    return np.nextafter(np.asarray(values).astype(np.float32), np.float32(np.inf))


class ProjectedBound:
    """An upper bound of ``query . v`` for every indexed embedding ``v``, cheap per candidate.

    ``basis``: ``k`` orthonormal directions (the leading eigenvectors of the second moments of an
    even sample of the embeddings). Per image, one record (so a candidate costs one gather): its
    embedding's projection on the basis as int8 codes with a scale, ``slack`` (those codes' error
    bound plus the held embedding's own) and ``residual`` (the length of what the basis leaves
    out). Then ``q . v = qp . vp + q_rest . v_rest <= qp . vp + |q_rest| |v_rest|`` (Cauchy-Schwarz),
    with ``vp`` known to within ``slack`` (``|qp| <= |q| <= 1``). A filter only: what passes is
    compared exactly, so the pairs never depend on it (nor on the basis). A plain object of arrays:
    it travels to pool and Dask workers with the query tasks."""

    def __init__(self, n: int, indexed: np.ndarray, views: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
                 dim: int, rows_at_once: int = 2048) -> None:
        """``views(rows)``: the float64 embeddings of ``rows`` as held, and how far each may be from
        the exact one (0 when exact); asked ``rows_at_once`` rows at a time (a few MB of transients:
        16,384 at once held ~140 MB for a moment)."""
        k = min(PROJECTED_DIMS, dim)
        sample = indexed[np.unique(np.linspace(0, len(indexed) - 1, min(len(indexed), BASIS_SAMPLE)).astype(np.int64))]
        moments = np.zeros((dim, dim))
        for s in range(0, len(sample), rows_at_once):
            held = views(sample[s : s + rows_at_once])[0]
            moments += held.T @ held
        eigenvalues, vectors = np.linalg.eigh(moments)  # dim directions however few rows
        self.basis = vectors[:, np.argsort(-eigenvalues, kind="stable")[:k]].astype(np.float32)
        exact_basis = self.basis.astype(np.float64)
        self.records = np.zeros((n, k + 4 * _RECORD_FLOATS), np.uint8)
        for s in range(0, len(indexed), rows_at_once):
            rows = indexed[s : s + rows_at_once]
            held, held_error = views(rows)
            projected = held @ exact_basis
            left = np.linalg.norm(held - projected @ exact_basis.T, axis=1)
            codes, scale, code_error = quantise(projected.astype(np.float32))
            # + 1e-6: the float32 rounding of a projection of at most 1
            slack = _up(code_error.astype(np.float64) + held_error + 1e-6)
            residual = _up(left * (1 + 1e-6) + 1e-7)
            self.records[rows] = np.concatenate(
                [codes.view(np.uint8), np.stack([scale, slack, residual], axis=1).view(np.uint8)], axis=1)

    @classmethod
    def of_codes(cls, indexed: np.ndarray, codes: np.ndarray, scale: np.ndarray, bound: np.ndarray) -> ProjectedBound:
        """Over embeddings held as :func:`quantise` codes."""
        return cls(len(codes), indexed, lambda rows: (codes[rows].astype(np.float64) * scale[rows, None],
                                                      bound[rows].astype(np.float64)), codes.shape[1])

    def project_queries(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each query row's projection on the basis, and the length of the rest (rounded up)."""
        projected = query @ self.basis
        exact_basis = self.basis.astype(np.float64)
        left = np.linalg.norm(query.astype(np.float64) - projected.astype(np.float64) @ exact_basis.T, axis=1)
        return projected, _up(left * (1 + 1e-6) + 1e-7)

    def may_reach(self, projected: tuple[np.ndarray, np.ndarray], q: np.ndarray, other: np.ndarray,
                  level) -> np.ndarray:
        """Whether ``query[q] . v[other]`` may reach ``level`` (``projected``: :meth:`project_queries`
        of the queries; a float32 margin on top)."""
        qproj, qleft = projected
        record = self.records.take(other, axis=0)  # take: half the time of fancy indexing here
        k = record.shape[1] - 4 * _RECORD_FLOATS
        scale, slack, residual = np.ascontiguousarray(record[:, k:]).view(np.float32).T
        approx = np.einsum("nd,nd->n", qproj.take(q, axis=0), record[:, :k].view(np.int8).astype(np.float32))
        return approx * scale + slack + qleft.take(q) * residual + np.float32(1e-4) >= level


def _pread_into(fd: int, buffer: memoryview, offset: int) -> None:
    """Fill ``buffer`` from ``fd`` at ``offset`` (a short read goes on; end of file is an error)."""
    while len(buffer):
        got = os.preadv(fd, [buffer], offset)
        if got <= 0:
            raise OSError(f"short read from the validate rows file at byte {offset}")
        buffer, offset = buffer[got:], offset + got


class ExactRows(RowStore):
    """Each image's exact float32 embeddings (both near-duplicate passes): a :class:`RowStore`
    written once in row order, in memory up to :data:`EXACT_IN_MEMORY_BYTES`, and gathered back
    for candidates scattered over the whole table by :meth:`read`, :data:`GATHER_ROWS` rows at a
    time with one ``preadv`` per run of consecutive rows into a buffer of this process: only the
    rows asked for are read and become resident (a RowStore's position read takes whole spans)."""

    def __init__(self, n: int, dim: int, in_memory_bytes: int | None = None) -> None:
        super().__init__(n, dim, np.float32, EXACT_IN_MEMORY_BYTES if in_memory_bytes is None else in_memory_bytes)

    def write(self, start: int, block: np.ndarray) -> None:
        self[start : start + len(block)] = block

    def read(self, rows: np.ndarray, width: int | None = None) -> np.ndarray:
        """``(len(rows), width)`` float32: the first ``width`` columns (default: all) of the rows at
        ``rows`` (any order, repeats allowed)."""
        rows = np.asarray(rows, dtype=np.int64)
        width = self.shape[1] if width is None else width
        if self._array is not None:
            return self._array[rows, :width]
        out = np.empty((len(rows), width), np.float32)
        if not len(rows):
            return out
        unique, inverse = np.unique(rows, return_inverse=True)
        got = np.empty((len(unique), width), np.float32)
        whole = np.empty((min(GATHER_ROWS, len(unique)), self.shape[1]), np.float32)
        view = memoryview(whole).cast("B")
        for s in range(0, len(unique), GATHER_ROWS):
            part = unique[s : s + GATHER_ROWS]
            # (A memory map of the rows' span, as before, mapped whole page-cache folios per touched
            # row: 2,048 rows of a million raised the high-water RSS by 1.1 GB, if only for a moment.)
            cut = np.r_[0, np.nonzero(np.diff(part) != 1)[0] + 1, len(part)].tolist()
            for a, b in zip(cut[:-1], cut[1:], strict=True):
                _pread_into(self._fd, view[a * self.row_bytes : b * self.row_bytes], int(part[a]) * self.row_bytes)
            got[s : s + len(part)] = whole[: len(part), :width]
        out[:] = got[inverse]
        return out


class LazyPixels:
    """``pixels[i]``: row ``i``'s image, read when asked (the review sheets show a few hundred
    images; holding every image for them was most of the stage's memory)."""

    def __init__(self, loader: Callable[[np.ndarray], np.ndarray]) -> None:
        self.loader = loader

    def __getitem__(self, pos: int) -> np.ndarray:
        return self.loader(np.array([int(pos)], dtype=np.int64))[0]


class ItemPositions:
    """``item_id -> row`` like a dict (``in``, ``[]``), on a pandas index instead of a dict of a
    million Python strings."""

    def __init__(self, item_ids) -> None:
        import pandas as pd

        self.index = pd.Index(np.asarray(item_ids, dtype=object))

    def __contains__(self, item) -> bool:
        return item in self.index

    def __getitem__(self, item) -> int:
        return int(self.index.get_loc(item))

    def __len__(self) -> int:
        return len(self.index)


# --- reading from the shards, and running chunks on the engine --------------------------------


class ShardRows:
    """The pixels of some images, by (shard, offset): a small, picklable task an engine can send
    to another process or machine, which reads the shards there (same absolute paths)."""

    def __init__(self, root: str, shard: np.ndarray, offset: np.ndarray) -> None:
        self.root, self.shard, self.offset = root, shard, offset

    def __call__(self) -> np.ndarray:
        from imgpipe.preprocess.shards import gather

        return gather(self.root, self.shard, self.offset)


class ShardLoader:
    """``loader(positions)``: the pixels of those rows of a table with ``shard`` and
    ``shard_offset`` columns; ``task(positions)``: the same read as a :class:`ShardRows`."""

    def __init__(self, root, shard: np.ndarray, offset: np.ndarray) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self.shard = np.asarray(shard, dtype=np.int64)
        self.offset = np.asarray(offset, dtype=np.int64)

    def task(self, positions: np.ndarray) -> ShardRows:
        return ShardRows(self.root, self.shard[positions], self.offset[positions])

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        return self.task(positions)()


class ShardPixels:
    """What the stage hands :func:`imgpipe.validate.validation.validate_dataset` as
    ``load_pixels``: called with manifest rows it returns their pixels; :meth:`for_rows` binds it
    to a table once, as a :class:`ShardLoader` an engine can split into tasks."""

    def __init__(self, root) -> None:
        self.root = root

    def for_rows(self, rows) -> ShardLoader:
        from imgpipe.contracts import SHARD, SHARD_OFFSET

        return ShardLoader(self.root, rows[SHARD].to_numpy(), rows[SHARD_OFFSET].to_numpy())

    def __call__(self, rows) -> np.ndarray:
        return self.for_rows(rows)(np.arange(len(rows)))


def run_chunk(task, fn: Callable, kwargs: dict, threads: int):
    """One chunk on an engine worker: read its pixels, run ``fn`` under the stage's BLAS thread
    count (the sums' order, hence their last bits, depend on it: the bytes must not depend on
    where a chunk ran)."""
    from threadpoolctl import threadpool_limits

    read, start = task
    with threadpool_limits(limits=threads):
        return fn(read(), start, **kwargs)


class ChunkEngine:
    """Runs :meth:`PixelSource.map` chunks on an :class:`imgpipe.engine.Runner`: each task carries
    a :class:`ShardRows` (paths and offsets, no pixels); large arguments (the LSH tables, the
    embeddings) go to the Dask workers once, not with every task. Results come back in order."""

    def __init__(self, runner, threads: int) -> None:
        self.runner = runner
        self.threads = threads

    def map_chunks(self, source: PixelSource, fn: Callable, bounds: list[tuple[int, int]], kwargs: dict):
        if not hasattr(source.loader, "task"):  # pixels only this process can read: run here
            for start, stop in bounds:
                yield start, stop, fn(source.loader(source.positions[start:stop]), start, **kwargs)
            return
        with self.runner.shared(kwargs) as shared:  # one copy per Dask worker, resolved in each task
            tasks = ((source.loader.task(source.positions[start:stop]), start) for start, stop in bounds)
            results = self.runner.map(run_chunk, tasks, fn, shared, self.threads,
                                      describe=lambda i, t: f"validate chunk {i} (rows {bounds[i][0]}..{bounds[i][1] - 1})")
            for (start, stop), result in zip(bounds, results, strict=True):
                yield start, stop, result
