"""Near duplicates that survive crops, rescales and colour shifts (the second near-duplicate pass).

Today's pass (:mod:`imgpipe.validate.duplicates`) lines copies up by whole-pixel shifts of up to
``max_shift`` and compares raw colour: a copy cropped by 10-20% of a side and scaled back, or one
with its contrast or saturation changed, falls below its threshold. This pass looks for those.

Embedding. Every image is reduced once to a small thumbnail (``THUMB`` x ``THUMB`` x 3 uint8, an
exact area average; 3 KiB), the only per-image data kept besides one embedding. An embedding of
a window of the image (fractional edges) is the mean colour of a ``grid`` x ``grid`` grid of cells
over it, computed exactly (area weights per row and column: two small matrix products), in an
opponent colour space: luminance standardised (mean and spread removed: brightness and contrast
drop out) and the two chroma channels centred and divided by their joint spread (saturation drops
out; a small hue turn is a small rotation of them), weighted ``chroma_weight``, then scaled to
unit length.

Search. Each image's full view is indexed in random-hyperplane LSH tables; each image then looks
up the embeddings of a fixed set of crop windows of itself (every side cut by 0, ``step``, ...,
``max_crop``), so a copy that was cropped out of it and scaled to full size meets its full view
in a window that lines up to within half a step. Candidates whose coarse similarity reaches
``candidate`` (the ``max_candidates`` best per image) are refined by moving the four window
edges in halving steps (coordinate search), compared on a finer ``verify_grid`` grid, and kept
when that similarity reaches ``threshold``. An image matching more than ``max_matches`` others
is a look-alike layout (a plain sky, a handwritten digit), not a copy: its pairs are left out. The work grows
with the number of images times windows times bucket size, not with all pairs.

Everything is seeded and ordered, and each image's result depends on its own pixels and the
index only, so the pairs are the same bytes for any chunking or thread count.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

LUMA = np.array([0.299, 0.587, 0.114])
# Chosen on planted copies of real CIFAR-10 photographs (benchmarks/bench_duplicates.py).
THUMB = 32  # thumbnail side kept per image (3 KiB): the windows are cut from it
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


def thumbnail(pixels: np.ndarray, size: int) -> np.ndarray:
    """``(N, size, size, 3)`` uint8 exact area averages of ``(N, H, W, C)`` uint8 images (grey: x3)."""
    if pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    pixels = pixels[..., :3]
    if pixels.shape[1:3] == (size, size):
        return np.ascontiguousarray(pixels, dtype=np.uint8)
    cells = _cell_means(Block(pixels), np.array([0.0, 1.0, 0.0, 1.0]), size)
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
    windows = np.broadcast_to(np.asarray(windows, np.float64), (n, 4))
    rows = _area_weights(windows[:, 0] * h, windows[:, 1] * h, grid, h)  # (n, g, h)
    cols = _area_weights(windows[:, 2] * w, windows[:, 3] * w, grid, w)  # (n, g, w)
    if isinstance(images, Block):  # one window for all: two plain matrix products
        out = (rows[0] @ images.by_row).reshape(grid * n * c, w) @ cols[0].T  # (g n c, g)
        return out.reshape(grid, n, c, grid).transpose(1, 0, 3, 2)
    out = np.matmul(rows, images.reshape(n, h, w * c)).reshape(n, grid, w, c)
    return np.matmul(cols[:, None], out).reshape(n, grid, grid, c)


def window_embeddings(images: np.ndarray, windows: np.ndarray, grid: int,
                      chroma_weight: float) -> tuple[np.ndarray, np.ndarray]:
    """Unit embeddings ``(N, 3 grid^2)`` float32 of one window per image (``images`` float32
    ``(N, H, W, 3)``, ``windows`` (N, 4) or (4,): fractions y0, y1, x0, x1), and each window's
    luminance spread (grey levels)."""
    n = len(images)
    rgb = _cell_means(images, windows, grid).reshape(n, grid * grid, 3)
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


def _keys(emb: np.ndarray, planes: np.ndarray) -> np.ndarray:
    tables, bits, dim = planes.shape
    signs = (emb @ planes.reshape(tables * bits, dim).T) > 0
    weights = np.uint64(1) << np.arange(bits, dtype=np.uint64)
    return (signs.reshape(len(emb), tables, bits).astype(np.uint64) * weights).sum(axis=2, dtype=np.uint64)


class CropIndex:
    """The per-image state of the pass: thumbnails and full-view embeddings, built chunk by chunk."""

    def __init__(self, thumb: int = THUMB, grid: int = GRID, chroma_weight: float = CHROMA_WEIGHT):
        self.thumb, self.grid, self.chroma_weight = thumb, grid, chroma_weight
        self._thumbs: list[np.ndarray] = []

    def add(self, pixels: np.ndarray) -> None:
        self._thumbs.append(thumbnail(pixels, self.thumb))

    @property
    def thumbs(self) -> np.ndarray:
        if len(self._thumbs) != 1:
            self._thumbs = [np.concatenate(self._thumbs) if self._thumbs else
                            np.zeros((0, self.thumb, self.thumb, 3), np.uint8)]
        return self._thumbs[0]

    def embed(self, table: np.ndarray, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return window_embeddings(table, windows, self.grid, self.chroma_weight)


def crop_duplicate_pairs(
    chunks: Iterable[np.ndarray],
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
) -> pd.DataFrame:
    """Pairs ``(a, b, similarity)`` (``a < b``, row positions in chunk order) of copies up to
    ``max_crop`` cropped per side, rescaled and colour-shifted. ``chunks`` yields uint8 pixel
    arrays in row order; only thumbnails are kept from them."""
    index = CropIndex(thumb, grid, chroma_weight)
    for pixels in chunks:
        index.add(pixels)
    thumbs = index.thumbs
    n = len(thumbs)
    if n < 2:
        return _pairs_frame(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    full = np.array([0.0, 1.0, 0.0, 1.0])
    dim = 3 * grid * grid
    centre = np.empty((n, dim), np.float32)
    usable = np.empty(n, bool)
    for s in range(0, n, block):
        emb, spread = index.embed(Block(thumbs[s : s + block]), full)
        centre[s : s + block], usable[s : s + block] = emb, spread >= MIN_SPREAD
    planes = np.random.default_rng(seed).standard_normal((tables, bits, dim)).astype(np.float32)
    keys = _keys(centre, planes)
    indexed = np.nonzero(usable)[0]
    order = indexed[np.argsort(keys[indexed], axis=0, kind="stable")]
    sorted_keys = np.ascontiguousarray(np.take_along_axis(keys, order, axis=0).T)
    order = np.ascontiguousarray(order.T)
    windows = crop_windows(max_crop, step)
    found_a, found_b, found_s = [], [], []
    for s in range(0, n, block):
        table = Block(thumbs[s : s + block])
        ok = usable[s : s + block]
        cq, co, cs, cw = [], [], [], []
        for w, win in enumerate(windows):
            query, qspread = index.embed(table, win)
            q, other = _lookup(_keys(query, planes), sorted_keys, order, ok & (qspread >= MIN_SPREAD))
            keep = other != q + s
            q, other = q[keep], other[keep]
            sim = np.einsum("nd,nd->n", query[q], centre[other])
            hit = sim >= candidate
            cq.append(q[hit])
            co.append(other[hit])
            cs.append(sim[hit])
            cw.append(np.full(int(hit.sum()), w))
        q, other, sim, win_of = (np.concatenate(v) for v in (cq, co, cs, cw))
        if not len(q):
            continue
        q, other, win_of = _best_candidates(q, other, sim, win_of, n, max_candidates)
        start = windows[win_of]
        sim = np.concatenate([
            _verify(index, table[q[r : r + REFINE_BATCH]], centre[other[r : r + REFINE_BATCH]],
                    thumbs[other[r : r + REFINE_BATCH]], start[r : r + REFINE_BATCH], step / 2, verify_grid)
            for r in range(0, len(q), REFINE_BATCH)])
        hit = sim >= threshold
        found_a.append(q[hit] + s)
        found_b.append(other[hit])
        found_s.append(sim[hit])
    if not sum(len(f) for f in found_a):
        return _pairs_frame(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    a, b, sims = np.concatenate(found_a), np.concatenate(found_b), np.concatenate(found_s)
    # A copy stands out from the crowd: an image that matches more than ``max_matches`` others is
    # a look-alike layout (a plain sky, a handwritten digit), not a copy; its pairs go.
    matches = np.bincount(a, minlength=n)
    ok = (matches[a] <= max_matches) & (matches[b] <= max_matches)
    a, b, sims = a[ok], b[ok], sims[ok]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    key = lo * n + hi
    # A pair may be found from both sides: keep its best similarity.
    order_ = np.lexsort((-sims, key))
    key, sims = key[order_], sims[order_]
    first = np.r_[True, key[1:] != key[:-1]]
    return _pairs_frame(key[first] // n, key[first] % n, sims[first])


def _best_candidates(q, other, sim, win_of, n, k):
    """Per (query, other) pair its best window; per query image its ``k`` most similar others
    (ties: lower position first), in (query, other) order."""
    key = q * n + other
    order = np.lexsort((win_of, -sim, key))  # best window first within each pair
    first = order[np.r_[True, key[order][1:] != key[order][:-1]]]
    q, other, sim, win_of = q[first], other[first], sim[first], win_of[first]
    order = np.lexsort((other, -sim, q))
    q, other, win_of = q[order], other[order], win_of[order]
    starts = np.r_[0, np.nonzero(q[1:] != q[:-1])[0] + 1]
    rank = np.arange(len(q)) - np.repeat(starts, np.diff(np.r_[starts, len(q)]))
    keep = rank < k
    q, other, win_of = q[keep], other[keep], win_of[keep]
    order = np.lexsort((other, q))
    return q[order], other[order], win_of[order]


def _lookup(qkeys: np.ndarray, sorted_keys: np.ndarray, order: np.ndarray,
            ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique (query row, indexed image) candidates that share a bucket in any table."""
    found = []
    n = int(order.max()) + 1 if order.size else 1
    for t in range(sorted_keys.shape[0]):
        lo = np.searchsorted(sorted_keys[t], qkeys[:, t], "left")
        hi = np.searchsorted(sorted_keys[t], qkeys[:, t], "right")
        count = np.where(ok, hi - lo, 0)
        total = int(count.sum())
        if not total:
            continue
        q = np.repeat(np.arange(len(qkeys)), count)
        pos = np.repeat(lo - np.cumsum(count) + count, count) + np.arange(total)
        found.append(q.astype(np.int64) * n + order[t][pos])
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    cand = np.unique(np.concatenate(found))
    return cand // n, cand % n


def _refine(index: CropIndex, tables: np.ndarray, target: np.ndarray, windows: np.ndarray,
            delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinate search of the four window edges (steps ``delta``, halved each round) for the
    best similarity of each query window to its ``target`` embedding."""
    windows = windows.copy()
    emb, _ = index.embed(tables, windows)
    best = np.einsum("nd,nd->n", emb, target)
    moves = [(e, sgn) for e in range(4) for sgn in (-1.0, 1.0)]
    for _ in range(REFINE_ROUNDS):
        for _pass in range(2):
            for e, sgn in moves:
                trial = windows.copy()
                trial[:, e] = np.clip(trial[:, e] + sgn * delta, 0.0, 1.0)
                valid = (trial[:, 1] - trial[:, 0] >= 0.4) & (trial[:, 3] - trial[:, 2] >= 0.4)
                emb, _ = index.embed(tables, trial)
                sim = np.einsum("nd,nd->n", emb, target)
                better = valid & (sim > best)
                windows[better] = trial[better]
                best = np.where(better, sim, best)
        delta /= 2
    return best, windows


def _verify(index, tables, target, other_thumbs, start, delta, verify_grid):
    sim, windows = _refine(index, tables, target, start, delta)
    if not verify_grid:
        return sim
    fine, _ = window_embeddings(tables, windows, verify_grid, index.chroma_weight)
    ref, _ = window_embeddings(other_thumbs.astype(np.float32), np.array([0.0, 1.0, 0.0, 1.0]), verify_grid,
                               index.chroma_weight)
    return np.einsum("nd,nd->n", fine, ref)


def pairs_from(pixels: np.ndarray, chunk: int = 4096, **kw) -> pd.DataFrame:
    """Convenience: the pass over an in-memory array, fed in chunks."""
    return crop_duplicate_pairs((pixels[s : s + chunk] for s in range(0, len(pixels), chunk)), **kw)


def _pairs_frame(a: np.ndarray, b: np.ndarray, sim: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"a": a.astype(np.int64), "b": b.astype(np.int64), "similarity": np.round(sim, 6)})




def add_crop_pairs(ctx, positions: np.ndarray, nd, seed: int, a: np.ndarray, b: np.ndarray,
                   sims: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The duplicates check's hook: this pass over the rows at ``positions`` (sorted), streamed
    from ``ctx.pixel_chunks()``, joined to the first pass's pairs ``(a, b, sims)`` (row positions)."""
    keep = np.zeros(len(ctx.rows), bool)
    keep[positions] = True
    chunks = (pixels[keep[rows]] for rows, pixels in ctx.pixel_chunks())
    pairs = crop_duplicate_pairs(chunks, nd.crop_threshold, effective_max_crop(nd), seed=seed)
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
