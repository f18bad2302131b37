"""Near duplicates that survive crops, rescales and colour shifts (the second near-duplicate pass).

Today's pass (:mod:`imgpipe.validate.duplicates`) lines copies up by whole-pixel shifts of up to
``max_shift`` and compares raw colour: a copy cropped by 10-20% of a side and scaled back, or one
with its contrast or saturation changed, falls below its threshold. This pass looks for those.

Embedding. Each image is reduced to a small thumbnail (``THUMB`` x ``THUMB`` x 3, an exact area
average). An embedding of a window of the image (fractional edges) is the mean colour of a
``grid`` x ``grid`` grid of cells over it, computed exactly (area weights per row and column: two
small matrix products), in an opponent colour space: luminance standardised (mean and spread
removed: brightness and contrast drop out) and the two chroma channels centred and divided by
their joint spread (saturation drops out; a small hue turn is a small rotation of them), weighted
``chroma_weight``, then scaled to unit length.

Search. Each image's full view is indexed in random-hyperplane LSH tables; each image then looks
up the embeddings of a fixed set of crop windows of itself (every side cut by 0, ``step``, ...,
``max_crop``), so a copy that was cropped out of it and scaled to full size meets its full view
in a window that lines up to within half a step. Candidates whose coarse similarity reaches
``candidate`` (the ``max_candidates`` best per image) are refined by moving the four window
edges in halving steps (coordinate search), compared on a finer ``verify_grid`` grid, and kept
when that similarity reaches ``threshold``. An image matching more than ``max_matches`` others
is a look-alike layout (a plain sky, a handwritten digit), not a copy: its pairs are left out. The work grows
with the number of images times windows times bucket size, not with all pairs.

Memory. The pixels are read twice, a chunk at a time (:class:`imgpipe.validate.chunked.PixelSource`):
once to index every image, once to query with each image's own windows. What stays per image is
what the other side of a pair needs: the LSH keys and positions (128 bytes), the full view's
embedding quantised to int8 with its scale and its exact error bound (200 bytes; a filter that
lets through every candidate whose exact similarity could reach ``candidate``), its projection
for the cheaper first filter before that one (44 bytes,
:class:`imgpipe.validate.chunked.ProjectedBound`), and a flag. The
exact float32 full-view embeddings (``grid`` and ``verify_grid``: 2.5 KB) are written once to
:class:`ExactRows`, in memory for small sets, else an unlinked temporary file read back for the
candidates only. The pairs and similarities are the same bytes as when every thumbnail was held
(tested against golden pairs recorded from that version).

Everything is seeded and ordered, and each image's result depends on its own pixels and the
index only, so the pairs are the same bytes for any chunking or thread count.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from imgpipe.validate.chunked import ExactRows, ProjectedBound, quantise
from imgpipe.validate.duplicates import best_per_pair, bucket_candidates, lsh_keys, query_spans

LUMA = np.array([0.299, 0.587, 0.114])
# Chosen on planted copies of real CIFAR-10 photographs (benchmarks/bench_duplicates.py).
THUMB = 32  # thumbnail side the windows are cut from (made per chunk, not kept)
GRID = 8  # cells per side of the search embedding (LSH and the edge refinement)
VERIFY_GRID = 12  # cells per side of the final similarity: finer, so look-alike layouts part
CHROMA_WEIGHT = 0.35  # weight of the two chroma channels against luminance
CANDIDATE = 0.85  # coarse similarity a candidate needs before its window is refined
TABLES, BITS = 16, 20  # LSH tables and sign bits each
MAX_CANDIDATES = 8  # most similar others refined per image: bounds the work where look-alikes crowd
MAX_MATCHES = 4  # an image matching more others than this is in a crowd of look-alikes: none of its pairs count
MIN_SPREAD = 2.0  # images whose luminance spread (grey levels, over the grid) is below this take no part
CHROMA_FLOOR = 4.0  # joint chroma spread floor (grey levels): a near-grey image's chroma noise stays small
REFINE_ROUNDS = 3  # halvings of the edge step in the refinement
REFINE_BATCH = 2048  # candidates refined at a time (each carries its thumbnail as float32)
CENTRE_IN_MEMORY_BYTES = 256 << 20  # exact 8x8 full views up to this stay in memory (about 350,000
# images): a candidate's similarity is then one gather, not the int8 filter and a read (2.5x faster at 50,000)
# Coarse hits a query block holds before they are cut to each image's best: at a million images a
# 2,048-image block's hits reached several hundred MB (28 bytes each), growing with the buckets.
KEEP_HITS = 1 << 21
LOOKUP_CANDIDATES = 1 << 19  # bucket entries looked up at a time (about 32 bytes each while sorted)
SIMILARITY_BATCH = 1 << 14  # candidates whose coarse similarity is computed at a time (1.5 KB each)
FULL = np.array([0.0, 1.0, 0.0, 1.0])


def thumbnail(pixels: np.ndarray, size: int) -> np.ndarray:
    """``(N, size, size, 3)`` uint8 exact area averages of ``(N, H, W, C)`` uint8 images (grey: x3)."""
    if pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    pixels = pixels[..., :3]
    if pixels.shape[1:3] == (size, size):
        return np.ascontiguousarray(pixels, dtype=np.uint8)
    cells = _cell_means(Block(pixels), FULL, size)
    return np.clip(np.round(cells), 0, 255).astype(np.uint8)


def _area_weights(lo: np.ndarray, hi: np.ndarray, grid: int, length: int) -> np.ndarray:
    """``(N, grid, length)``: the share of pixel ``h`` in each of ``grid`` equal cells over
    ``[lo, hi]`` (pixel units, fractional), divided by the cell's length (rows sum to 1)."""
    edges = lo[:, None] + (hi - lo)[:, None] * (np.arange(grid + 1) / grid)
    pix = np.arange(length)
    overlap = np.clip(np.minimum(edges[:, 1:, None], pix + 1) - np.maximum(edges[:, :-1, None], pix), 0, None)
    return (overlap / np.maximum((hi - lo) / grid, 1e-9)[:, None, None]).astype(np.float32)


class Block:
    """A block of images (float32 ``(N, H, W, 3)``) with the row-major copy that lets one window
    over every image be two matrix products."""

    def __init__(self, images: np.ndarray):
        self.images = images.astype(np.float32)
        self.shape = self.images.shape
        n, h, w, c = self.shape
        self.by_row = np.ascontiguousarray(self.images.transpose(1, 0, 3, 2)).reshape(h, n * c * w)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        return self.images[rows]


def _cell_means(images: np.ndarray, windows: np.ndarray, grid: int) -> np.ndarray:
    """``(N, grid, grid, 3)`` exact mean colour of each cell of a ``grid`` x ``grid`` grid over one
    window per image (``windows`` (N, 4) or (4,): fractions y0, y1, x0, x1)."""
    n, h, w, c = images.shape
    if isinstance(images, Block):  # one window for all: two plain matrix products
        win = np.asarray(windows, np.float64).reshape(-1, 4)[:1]
        rows = _area_weights(win[:, 0] * h, win[:, 1] * h, grid, h)[0]  # (g, h)
        cols = _area_weights(win[:, 2] * w, win[:, 3] * w, grid, w)[0]  # (g, w)
        out = (rows @ images.by_row).reshape(grid * n * c, w) @ cols.T  # (g n c, g)
        return out.reshape(grid, n, c, grid).transpose(1, 0, 3, 2)
    windows = np.broadcast_to(np.asarray(windows, np.float64), (n, 4))
    rows = _area_weights(windows[:, 0] * h, windows[:, 1] * h, grid, h)  # (n, g, h)
    cols = _area_weights(windows[:, 2] * w, windows[:, 3] * w, grid, w)  # (n, g, w)
    out = np.matmul(rows, images.reshape(n, h, w * c)).reshape(n, grid, w, c)
    return np.matmul(cols[:, None], out).reshape(n, grid, grid, c)


def window_embeddings(images: np.ndarray, windows: np.ndarray, grid: int,
                      chroma_weight: float) -> tuple[np.ndarray, np.ndarray]:
    """Unit embeddings ``(N, 3 grid^2)`` float32 of one window per image (``images`` float32
    ``(N, H, W, 3)``, ``windows`` (N, 4) or (4,): fractions y0, y1, x0, x1), and each window's
    luminance spread (grey levels)."""
    n = len(images)
    return _normalised(_cell_means(images, windows, grid).reshape(n, grid * grid, 3), chroma_weight)


def _normalised(rgb: np.ndarray, chroma_weight: float) -> tuple[np.ndarray, np.ndarray]:
    n = len(rgb)
    luma = rgb @ LUMA.astype(np.float32)
    chroma = rgb[:, :, [2, 0]] - luma[:, :, None]  # blue and red minus luminance
    luma = luma - luma.mean(axis=1, keepdims=True)
    spread = np.sqrt((luma * luma).mean(axis=1))
    luma /= np.maximum(spread, 1e-6)[:, None]
    chroma = chroma - chroma.mean(axis=1, keepdims=True)
    cspread = np.sqrt((chroma * chroma).mean(axis=(1, 2)))
    chroma *= (chroma_weight / np.maximum(cspread, CHROMA_FLOOR))[:, None, None]
    emb = np.concatenate([luma, chroma.reshape(n, -1)], axis=1)
    emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-9)
    return emb.astype(np.float32), spread


def crop_windows(max_crop: float, step: float) -> np.ndarray:
    """``(W, 4)`` windows: each side cut by 0, step, ..., max_crop (the full view first)."""
    cuts = np.round(np.arange(0, max_crop + 1e-9, step), 6)
    return np.array([(t, 1 - b, left, 1 - r) for t in cuts for b in cuts for left in cuts for r in cuts])


class _Index:
    """The per-image state: LSH tables over the full views, the quantised full views (the
    candidate filter) and the exact embeddings of the other side of a pair (:class:`ExactRows`)."""

    def __init__(self, n: int, grid: int, verify_grid: int, tables: int):
        self.dim = 3 * grid * grid
        self.vdim = 3 * verify_grid * verify_grid if verify_grid else 0
        self.centre = None  # exact full views in memory, or their int8 codes, scales and error bounds
        if n * self.dim * 4 <= CENTRE_IN_MEMORY_BYTES:
            self.centre = np.zeros((n, self.dim), np.float32)
        else:
            self.codes = np.zeros((n, self.dim), np.int8)
            self.scale = np.zeros(n, np.float32)
            self.bound = np.zeros(n, np.float32)
        self.usable = np.zeros(n, bool)
        self.keys = np.zeros((n, tables), np.uint32)
        self.exact = ExactRows(n, self.dim + self.vdim)

    def finish(self, bits: int) -> None:
        """Sort the images by key per table, one table at a time (flat images sit in no bucket),
        and note where each key's bucket starts: a fixed 4 MiB per table at 20 bits, instead of
        the sorted keys (64 bytes per image) and two binary searches per lookup. Then the first
        filter's projections of the full views (:class:`ProjectedBound`)."""
        indexed = np.nonzero(self.usable)[0]
        self.projected = ProjectedBound(len(self.usable), indexed, self._full_views, self.dim)
        position = np.int32 if len(self.usable) < 2**31 else np.int64
        tables = self.keys.shape[1]
        self.order = np.empty((tables, len(indexed)), position)
        self.bucket_starts = np.zeros((tables, (1 << bits) + 1), position)
        for t in range(tables):
            column = self.keys[indexed, t]
            self.order[t] = indexed[np.argsort(column, kind="stable")]
            np.cumsum(np.bincount(column, minlength=1 << bits), out=self.bucket_starts[t, 1:])
        del self.keys

    def _full_views(self, rows) -> tuple[np.ndarray, np.ndarray]:
        """float64 full views of ``rows`` as held in memory, and how far each may be from the exact
        one (0 in memory; the int8 codes' error bound otherwise)."""
        if self.centre is not None:
            views = self.centre[rows].astype(np.float64)
            return views, np.zeros(len(views))
        views = self.codes[rows].astype(np.float64) * self.scale[rows, None].astype(np.float64)
        return views, self.bound[rows].astype(np.float64)

    def may_reach(self, query: np.ndarray, q: np.ndarray, other: np.ndarray, level: float) -> np.ndarray:
        """Whether the exact similarity of ``query[q]`` and ``other``'s full view may reach
        ``level``: the quantised similarity plus its error bound (|query| = 1) and a float32 margin."""
        approx = np.einsum("nd,nd->n", query[q], self.codes[other].astype(np.float32)) * self.scale[other]
        return approx + self.bound[other] * np.float32(1.0001) + np.float32(1e-4) >= level


def _source(pixels):
    from imgpipe.validate.chunked import PixelSource, as_source

    source = as_source(pixels)
    # Both passes over the pixels run in this process: the second reads the exact embeddings back.
    return PixelSource(source.loader, source.positions, source.shape)


def _blocks(source, rows: int, block: int, thumb: int):
    """``(start, thumbnails)`` in row order, ``block`` images at a time (the last may be smaller),
    read ``rows`` images at a time: the blocks, hence the bytes, do not depend on the chunk size."""
    pending, have, start = [], 0, 0
    for s in range(0, source.n, rows):
        part = thumbnail(source.read(np.arange(s, min(s + rows, source.n))), thumb)
        pending.append(part)
        have += len(part)
        while have >= block:
            joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
            yield start, joined[:block]
            start += block
            pending, have = ([joined[block:]] if len(joined) > block else []), len(joined) - block
    if have:
        yield start, np.concatenate(pending) if len(pending) > 1 else pending[0]


def crop_duplicate_pairs(
    pixels,
    threshold: float = 0.96,
    max_crop: float = 0.2,
    step: float = 0.1,
    candidate: float = CANDIDATE,
    tables: int = TABLES,
    bits: int = BITS,
    thumb: int = THUMB,
    grid: int = GRID,
    verify_grid: int = VERIFY_GRID,
    chroma_weight: float = CHROMA_WEIGHT,
    seed: int = 0,
    block: int = 2048,
    max_candidates: int = MAX_CANDIDATES,
    max_matches: int = MAX_MATCHES,
    chunk: int | None = None,
) -> pd.DataFrame:
    """Pairs ``(a, b, similarity)`` (``a < b``, row positions) of copies up to ``max_crop``
    cropped per side, rescaled and colour-shifted. ``pixels``: an ``(N, H, W, C)`` uint8 array or
    a :class:`imgpipe.validate.chunked.PixelSource`, read twice, ``chunk`` images at a time
    (default: 12 MiB of pixels); the pairs depend on neither ``chunk`` nor the thread count."""
    from imgpipe.validate.chunked import rows_per_chunk

    if bits > 24:
        raise ValueError(f"crop_duplicate_pairs: bits={bits} > 24 (a table notes where each of 2**bits buckets starts)")
    source = _source(pixels)
    n = source.n
    if n < 2:
        return _pairs_frame(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    rows = chunk or rows_per_chunk(source.shape)
    index = _Index(n, grid, verify_grid, tables)
    planes = np.random.default_rng(seed).standard_normal((tables, bits, index.dim)).astype(np.float32)
    try:
        for s, thumbs in _blocks(source, rows, block, thumb):
            _index_block(index, s, thumbs, planes, grid, verify_grid, chroma_weight)
        index.finish(bits)
        windows = crop_windows(max_crop, step)
        found = [_query_block(index, s, thumbs, planes, windows, step, candidate, threshold, grid, verify_grid,
                              chroma_weight, max_candidates)
                 for s, thumbs in _blocks(source, rows, block, thumb)]
    finally:
        index.exact.close()
    a, b, sims = (np.concatenate([f[k] for f in found]) for k in range(3))
    if not len(a):
        return _pairs_frame(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    # A copy stands out from the crowd: an image that matches more than ``max_matches`` others is
    # a look-alike layout (a plain sky, a handwritten digit), not a copy; its pairs go.
    matches = np.bincount(a, minlength=n)
    ok = (matches[a] <= max_matches) & (matches[b] <= max_matches)
    a, b, sims = a[ok], b[ok], sims[ok]
    key, best = best_per_pair(a, b, sims, n)
    return _pairs_frame(key // n, key % n, best)


def _index_block(index: _Index, s: int, thumbs: np.ndarray, planes: np.ndarray, grid: int, verify_grid: int,
                 chroma_weight: float) -> None:
    """One block's full views: exact embeddings out to :class:`ExactRows`, the rest in memory."""
    e = s + len(thumbs)
    centre, spread = window_embeddings(Block(thumbs), FULL, grid, chroma_weight)
    index.usable[s:e] = spread >= MIN_SPREAD
    index.keys[s:e] = lsh_keys(centre, planes, np.uint32)
    if index.centre is not None:
        index.centre[s:e] = centre
    else:
        index.codes[s:e], index.scale[s:e], index.bound[s:e] = quantise(centre)
    exact = [centre]
    if verify_grid:  # the per-image path (not Block): the same bytes the verification compared before
        exact.append(window_embeddings(thumbs.astype(np.float32), FULL, verify_grid, chroma_weight)[0])
    index.exact.write(s, np.concatenate(exact, axis=1))


def _query_block(index: _Index, s: int, thumbs: np.ndarray, planes: np.ndarray, windows: np.ndarray, step: float,
                 candidate: float, threshold: float, grid: int, verify_grid: int, chroma_weight: float,
                 max_candidates: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One block's pairs ``(a, b, similarity)`` (``a`` in the block): its windows looked up,
    the best candidates refined and verified."""
    table = Block(thumbs)
    ok = index.usable[s : s + len(thumbs)]
    n = len(index.usable)
    cq, co, cs, cw = [], [], [], []
    held = 0
    for w, query, qspread in _all_windows(table, windows, grid, chroma_weight):
        live = ok & (qspread >= MIN_SPREAD)
        if not live.any():
            continue
        qkeys = lsh_keys(query, planes, np.uint32)
        projected = index.projected.project_queries(query)
        for r0, r1 in _query_spans(index.bucket_starts, qkeys, live):
            q, other = bucket_candidates(qkeys[r0:r1], None, index.order, live[r0:r1], s + r0, n,
                                         index.bucket_starts)
            q += r0
            for c in range(0, len(q), SIMILARITY_BATCH):
                hq, ho, hs = _coarse_hits(index, query, projected, q[c : c + SIMILARITY_BATCH],
                                          other[c : c + SIMILARITY_BATCH], candidate)
                cq.append(hq)
                co.append(ho)
                cs.append(hs)
                cw.append(np.full(len(hq), w))
                held += len(hq)
                if held > KEEP_HITS:  # the best so far: the same best at the end (see _best_candidates)
                    kept = _best_candidates(*(np.concatenate(v) for v in (cq, co, cs, cw)), n, max_candidates)
                    cq, co, cs, cw = ([v] for v in kept)
                    held = len(kept[0])
    if not cq or not sum(len(v) for v in cq):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    q, other, sim, win_of = (np.concatenate(v) for v in (cq, co, cs, cw))
    q, other, _, win_of = _best_candidates(q, other, sim, win_of, n, max_candidates)
    start = windows[win_of]
    sims = []
    for r in range(0, len(q), REFINE_BATCH):
        exact = index.exact.read(other[r : r + REFINE_BATCH])
        sims.append(_verify(table[q[r : r + REFINE_BATCH]], exact[:, : index.dim], exact[:, index.dim :],
                            start[r : r + REFINE_BATCH], step / 2, grid, verify_grid, chroma_weight))
    sim = np.concatenate(sims)
    hit = sim >= threshold
    return q[hit] + s, other[hit], sim[hit]


def _query_spans(bucket_starts: np.ndarray, qkeys: np.ndarray, live: np.ndarray) -> list[tuple[int, int]]:
    """Query rows in consecutive spans of at most :data:`LOOKUP_CANDIDATES` bucket entries."""
    count = sum(bucket_starts[t][qkeys[:, t] + 1] - bucket_starts[t][qkeys[:, t]] for t in range(qkeys.shape[1]))
    return query_spans(count, live, LOOKUP_CANDIDATES)


def _coarse_hits(index: _Index, query: np.ndarray, projected: tuple[np.ndarray, np.ndarray], q: np.ndarray,
                 other: np.ndarray, candidate: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidates whose coarse similarity reaches ``candidate``, with it (``projected``: the
    queries' :meth:`ProjectedBound.project_queries`)."""
    maybe = index.projected.may_reach(projected, q, other, candidate)
    q, other = q[maybe], other[maybe]
    if index.centre is not None:
        sim = np.einsum("nd,nd->n", query[q], index.centre[other])
    else:  # the int8 filter: exact rows read only for the candidates that may reach ``candidate``
        maybe = index.may_reach(query, q, other, candidate)
        q, other = q[maybe], other[maybe]
        sim = np.einsum("nd,nd->n", query[q], index.exact.read(other, index.dim))
    hit = sim >= candidate
    return q[hit], other[hit], sim[hit]


def _all_windows(table: Block, windows: np.ndarray, grid: int, chroma_weight: float):
    """``(w, embeddings, spreads)`` of every window over every image of ``table``, as
    :func:`window_embeddings` gives them one window at a time (the same matrix products, so the
    same bytes), but the row product is shared by the windows with the same top and bottom edge:
    9 instead of 81 passes over the block."""
    n, h, w, c = table.shape
    by_edges: dict[tuple[float, float], list[int]] = {}
    for k, (y0, y1, _, _) in enumerate(windows):
        by_edges.setdefault((float(y0), float(y1)), []).append(k)
    for (y0, y1), members in by_edges.items():
        rows = _area_weights(np.array([y0 * h]), np.array([y1 * h]), grid, h)[0]
        part = (rows @ table.by_row).reshape(grid * n * c, w)
        for k in members:
            cols = _area_weights(windows[k, 2:3] * w, windows[k, 3:4] * w, grid, w)[0]
            cells = (part @ cols.T).reshape(grid, n, c, grid).transpose(1, 0, 3, 2)
            yield (k, *_normalised(cells.reshape(n, grid * grid, 3), chroma_weight))


def _best_candidates(q, other, sim, win_of, n, k):
    """Per (query, other) pair its best window; per query image its ``k`` most similar others
    (ties: lower position first), in (query, other) order, with their similarity. One total order
    decides both, so the best of the union of parts is the best of the parts' bests: the hits can
    be cut down as they come (:data:`KEEP_HITS`) with the same result."""
    key = q * n + other
    order = np.lexsort((win_of, -sim, key))  # best window first within each pair
    first = order[np.r_[True, key[order][1:] != key[order][:-1]]]
    q, other, sim, win_of = q[first], other[first], sim[first], win_of[first]
    order = np.lexsort((other, -sim, q))
    q, other, sim, win_of = q[order], other[order], sim[order], win_of[order]
    starts = np.r_[0, np.nonzero(q[1:] != q[:-1])[0] + 1]
    rank = np.arange(len(q)) - np.repeat(starts, np.diff(np.r_[starts, len(q)]))
    keep = rank < k
    q, other, sim, win_of = q[keep], other[keep], sim[keep], win_of[keep]
    order = np.lexsort((other, q))
    return q[order], other[order], sim[order], win_of[order]


def _refine(images: np.ndarray, target: np.ndarray, windows: np.ndarray, delta: float, grid: int,
            chroma_weight: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinate search of the four window edges (steps ``delta``, halved each round) for the
    best similarity of each query window to its ``target`` embedding. A move that is clipped to
    nothing or leaves a side under 40% cannot win, so only the others are embedded."""
    windows = windows.copy()
    emb, _ = window_embeddings(images, windows, grid, chroma_weight)
    best = np.einsum("nd,nd->n", emb, target)
    moves = [(e, sgn) for e in range(4) for sgn in (-1.0, 1.0)]
    for _ in range(REFINE_ROUNDS):
        for _pass in range(2):
            for e, sgn in moves:
                edge = np.clip(windows[:, e] + sgn * delta, 0.0, 1.0)
                trial = windows.copy()
                trial[:, e] = edge
                valid = (trial[:, 1] - trial[:, 0] >= 0.4) & (trial[:, 3] - trial[:, 2] >= 0.4)
                rows = np.nonzero(valid & (edge != windows[:, e]))[0]
                if not len(rows):
                    continue
                emb, _ = window_embeddings(images[rows], trial[rows], grid, chroma_weight)
                sim = np.einsum("nd,nd->n", emb, target[rows])
                better = sim > best[rows]
                won = rows[better]
                windows[won] = trial[won]
                best[won] = sim[better]
        delta /= 2
    return best, windows


def _verify(images, target, ref, start, delta, grid, verify_grid, chroma_weight):
    sim, windows = _refine(images, target, start, delta, grid, chroma_weight)
    if not verify_grid:
        return sim
    fine, _ = window_embeddings(images, windows, verify_grid, chroma_weight)
    return np.einsum("nd,nd->n", fine, ref)


def pairs_from(pixels: np.ndarray, chunk: int = 4096, **kw) -> pd.DataFrame:
    """Convenience: the pass over an in-memory array, read in chunks."""
    return crop_duplicate_pairs(pixels, chunk=chunk, **kw)


def _pairs_frame(a: np.ndarray, b: np.ndarray, sim: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"a": a.astype(np.int64), "b": b.astype(np.int64), "similarity": np.round(sim, 6)})


def add_crop_pairs(ctx, positions: np.ndarray, nd, seed: int, a: np.ndarray, b: np.ndarray,
                   sims: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The duplicates check's hook: this pass over the rows at ``positions`` (sorted), read from
    ``ctx.pixel_source`` chunk by chunk, joined to the first pass's pairs ``(a, b, sims)`` (row positions)."""
    pairs = crop_duplicate_pairs(ctx.pixel_source(positions), nd.crop_threshold, effective_max_crop(nd), seed=seed)
    return (np.concatenate([a, positions[pairs["a"].to_numpy()]]),
            np.concatenate([b, positions[pairs["b"].to_numpy()]]),
            np.concatenate([sims, pairs["similarity"].to_numpy(dtype=np.float64)]))


AUTO_MAX_CROP = 0.2  # max_crop: auto on a photo source (and where no source is known)


def effective_max_crop(nd) -> float:
    return AUTO_MAX_CROP if nd.max_crop == "auto" else float(nd.max_crop)


def resolve_max_crop(cfg, source: str):
    """The validate params with ``near_duplicates.max_crop: auto`` decided by ``download.source``:
    0.2 for photographs, off for handwriting, whose look-alike strokes pass for crops of each other
    (on the built-in digits the pass put 1,156 images into groups)."""
    from imgpipe.contracts import is_handwriting_source

    nd = cfg.near_duplicates
    if nd.max_crop != "auto":
        return cfg
    value = 0.0 if is_handwriting_source(source) else AUTO_MAX_CROP
    return cfg.model_copy(update={"near_duplicates": nd.model_copy(update={"max_crop": value})})
