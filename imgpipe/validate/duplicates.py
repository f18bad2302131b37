"""Exact and near duplicates, grouped transitively.

Exact duplicates share ``pixel_sha256`` (the manifest's hash of the final pixels).

Near duplicates are found on a small pixel embedding, not on the manifest's 64-bit phash: on
32x32 photographs a copy shifted by 2 pixels moves the phash by 16 bits on median, while two
unrelated CIFAR-10 images are 22 bits apart at the 1st percentile, so no radius separates them
(measured on the 50,000 CIFAR-10 training images; README, "Validate and clean"). The embedding is
the mean colour of a 7x7 grid of cells over the image minus a ``margin``-pixel border, centred and
scaled to unit length; it is taken at every offset of the crop window within the border
(``(2 margin + 1)^2`` shifts), so a copy shifted by up to ``margin`` pixels lines up with its
original in one of them. A pair is a near duplicate when the cosine similarity of some shift
reaches ``threshold``: exact verification on candidates.

Candidates come from random-hyperplane LSH (SimHash): ``tables`` hash tables of ``bits`` sign
bits each; an image's shifted embeddings (half of the shifts: the other half is the same pair
seen from the other image) are looked up in the tables of the centred ones, so the
work grows with the number of images times the bucket size, not with all pairs. For a pair at
similarity 0.99 one table catches it with probability ~0.33 (24 bits), twelve tables with 0.99.
``brute_force_pairs`` is the all-pairs reference the benchmark and the tests compare against.

Everything is seeded and ordered, so the groups are the same bytes on every run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

GRID = 7  # cells per side of the embedding grid
KEY_BLOCK = 16384  # rows per block of LSH keys (~40 MB of transients)
# Images per chunk at most: a query chunk's bucket candidates grow with the chunk times the bucket
# size, which grows with N (at 300,000 32x32 images, 4,096-image chunks: +681 MiB high-water for
# the pass, 1,024: +423 MiB, ~20% more CPU). The pairs do not depend on it.
QUERY_ROWS = 1024
# Bucket entries looked up at a time, and candidates compared at a time (each carries two 147-float
# rows while compared): at a million 32x32 images a 1,024-row query chunk met up to ~30,000
# entries per row and its candidates took ~0.3 GB at once. The pairs do not depend on either.
LOOKUP_CANDIDATES = 1 << 19
SIMILARITY_BATCH = 1 << 14
MIN_NORM = 1.0  # images flatter than this (mean |cell - mean| in grey levels) take no part


def integral(pixels: np.ndarray) -> np.ndarray:
    """Summed-area table ``(N, H+1, W+1, C)`` int32 of uint8 images (exact)."""
    n, h, w, c = pixels.shape
    table = np.zeros((n, h + 1, w + 1, c), np.int32)
    np.cumsum(np.cumsum(pixels, axis=1, dtype=np.int32), axis=2, out=table[:, 1:, 1:])
    return table


def _edges(start: int, length: int) -> np.ndarray:
    return np.round(start + np.arange(GRID + 1) * (length / GRID)).astype(np.int64)


def embed(table: np.ndarray, oy: int, ox: int, margin: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit embeddings ``(N, GRID*GRID*C)`` float32 of the crop at offset (oy, ox), and each
    crop's spread (RMS deviation of its cell means from their mean, in grey levels)."""
    n, hp, wp, c = table.shape
    r = _edges(oy, hp - 1 - 2 * margin)
    k = _edges(ox, wp - 1 - 2 * margin)
    corners = table[:, r][:, :, k].astype(np.float64)
    sums = corners[:, 1:, 1:] - corners[:, :-1, 1:] - corners[:, 1:, :-1] + corners[:, :-1, :-1]
    area = np.diff(r)[:, None] * np.diff(k)[None, :]
    cells = (sums / np.maximum(area, 1)[None, :, :, None]).reshape(n, -1)
    cells -= cells.mean(axis=1, keepdims=True)
    norm = np.sqrt((cells * cells).mean(axis=1))
    unit = cells / np.maximum(norm * np.sqrt(cells.shape[1]), 1e-9)[:, None]
    return unit.astype(np.float32), norm


def offsets(margin: int) -> list[tuple[int, int]]:
    return [(oy, ox) for oy in range(2 * margin + 1) for ox in range(2 * margin + 1)]


def half_offsets(margin: int) -> list[tuple[int, int]]:
    """Half of the shifts (and no shift): a pair shifted by ``s`` one way is found by querying the
    other image with ``-s``, so the LSH search queries each image at these only, in both orders."""
    return [(oy, ox) for oy, ox in offsets(margin) if (oy, ox) >= (margin, margin)]


def lsh_keys(emb: np.ndarray, planes: np.ndarray, dtype=np.uint64) -> np.ndarray:
    """``(N, tables)`` bucket keys: the sign bits of each table's projections, bit ``i`` worth
    ``2**i`` (packed bytes, not a multiply-add per bit; ``dtype`` must hold ``bits`` bits)."""
    tables, bits, dim = planes.shape
    signs = (emb @ planes.reshape(tables * bits, dim).T) > 0
    packed = np.packbits(signs.reshape(len(emb), tables, bits), axis=2, bitorder="little")
    dtype = np.dtype(dtype)
    wide = np.zeros((len(emb), tables, dtype.itemsize), np.uint8)
    wide[:, :, : packed.shape[2]] = packed
    return wide.view(dtype.newbyteorder("<")).reshape(len(emb), tables).astype(dtype)


def bucket_candidates(qkeys: np.ndarray, sorted_keys: np.ndarray | None, order: np.ndarray, ok: np.ndarray,
                      start: int, n: int, bucket_starts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The unique ``(query row, indexed row)`` pairs, in that order, whose keys share a bucket in
    any table (``sorted_keys``/``order``: ``(tables, indexed)``), for the query rows where ``ok``;
    query row ``i`` is image ``start + i`` of ``n``, never paired with itself. Both passes use it.
    ``bucket_starts`` (``(tables, 2**bits + 1)``, each key's first position in ``order``) stands
    in for ``sorted_keys`` where the keys are short: a lookup instead of two binary searches."""
    found = []
    for t in range(len(order)):
        if bucket_starts is not None:
            lo, hi = bucket_starts[t][qkeys[:, t]], bucket_starts[t][qkeys[:, t] + 1]
        else:
            lo = np.searchsorted(sorted_keys[t], qkeys[:, t], "left")
            hi = np.searchsorted(sorted_keys[t], qkeys[:, t], "right")
        count = np.where(ok, hi - lo, 0)
        total = int(count.sum())
        if not total:
            continue
        q = np.repeat(np.arange(len(qkeys)), count)
        pos = np.repeat(lo - np.cumsum(count) + count, count) + np.arange(total)
        other = order[t][pos].astype(np.int64)
        keep = other != q + start
        found.append(q[keep].astype(np.int64) * n + other[keep])
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    cand = np.sort(np.concatenate(found))  # sort and drop repeats: 40x faster than np.unique's hashing here
    cand = cand[np.r_[True, cand[1:] != cand[:-1]]] if len(cand) else cand
    return cand // n, cand % n


def query_spans(count: np.ndarray, live: np.ndarray, limit: int) -> list[tuple[int, int]]:
    """Query rows in consecutive spans whose live rows meet at most ``limit`` bucket entries in
    all (``count`` per row; one row may exceed it alone): both passes' look-ups stay bounded
    however full the buckets get, and a row's tables are never split, so its pairs are the same."""
    total = np.cumsum(np.where(live, count, 0), dtype=np.int64)
    spans, r0 = [], 0
    while r0 < len(count):
        base = total[r0 - 1] if r0 else 0
        r1 = max(r0 + 1, int(np.searchsorted(total, base + limit, "right")))
        spans.append((r0, min(r1, len(count))))
        r0 = r1
    return spans


def best_per_pair(a: np.ndarray, b: np.ndarray, sims: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A pair may be found from both sides, or at several shifts or windows: its keys
    ``min * n + max`` (sorted) and each one's best similarity (same dtype as ``sims``)."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    key = np.minimum(a, b) * n + np.maximum(a, b)
    order = np.lexsort((-sims, key))
    key, sims = key[order], np.asarray(sims)[order]
    first = np.r_[True, key[1:] != key[:-1]] if len(key) else np.zeros(0, bool)
    return key[first], sims[first]


def _margin_for(pixels: np.ndarray, margin: int) -> int:
    h, w = pixels.shape[1:3]
    return _margin_for_shape((h, w), margin)


def _margin_for_shape(shape: tuple[int, ...], margin: int) -> int:
    h, w = shape[:2]
    return max(0, min(margin, (min(h, w) - GRID) // 2))


def centre_chunk(pixels: np.ndarray, start: int, margin: int) -> tuple[np.ndarray, np.ndarray]:
    """One chunk's centred embeddings and spreads (the per-image work of the first pass)."""
    return embed(integral(pixels), margin, margin, margin)


def query_chunk(pixels: np.ndarray, start: int, margin: int, planes: np.ndarray, sorted_keys: np.ndarray,
                order: np.ndarray, usable: np.ndarray, codes: np.ndarray, scale: np.ndarray, bound: np.ndarray,
                threshold: float, projected=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One chunk's candidates that may be near duplicates ``(a, b, a's shifted embedding)`` (row
    positions, ``a`` in the chunk): its shifted embeddings looked up in the tables, each candidate
    kept when ``projected`` (a :class:`imgpipe.validate.chunked.ProjectedBound`, optional: the
    cheap first filter) and then its similarity to ``b``'s quantised centred embedding, plus that
    one's error bound, say it may reach ``threshold``. The caller verifies them on the exact
    embeddings, so the pairs do not depend on the filters."""
    n = len(usable)
    s = start
    table = integral(pixels)
    ok = usable[s : s + len(pixels)]
    hit_a, hit_b, hit_q = [], [], []
    for oy, ox in half_offsets(margin):
        query, _ = embed(table, oy, ox, margin)
        qkeys = lsh_keys(query, planes, sorted_keys.dtype)
        projected_queries = projected.project_queries(query) if projected is not None else None
        count = sum(np.searchsorted(sorted_keys[t], qkeys[:, t], "right")
                    - np.searchsorted(sorted_keys[t], qkeys[:, t], "left") for t in range(len(sorted_keys)))
        for r0, r1 in query_spans(count, ok, LOOKUP_CANDIDATES):
            q, other = bucket_candidates(qkeys[r0:r1], sorted_keys, order, ok[r0:r1], s + r0, n)
            q += r0
            for c in range(0, len(q), SIMILARITY_BATCH):
                qc, oc = q[c : c + SIMILARITY_BATCH], other[c : c + SIMILARITY_BATCH]
                if projected is not None:
                    first = projected.may_reach(projected_queries, qc, oc, threshold)
                    qc, oc = qc[first], oc[first]
                # |query| <= 1, so the exact similarity is within ``bound`` of the quantised one
                approx = np.einsum("nd,nd->n", query[qc], codes[oc].astype(np.float32)) * scale[oc]
                maybe = approx + bound[oc] * np.float32(1.0001) + np.float32(1e-4) >= threshold
                hit_a.append(qc[maybe] + s)
                hit_b.append(oc[maybe])
                hit_q.append(query[qc[maybe]])
    if not hit_a:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, planes.shape[2]), np.float32)
    return np.concatenate(hit_a), np.concatenate(hit_b), np.concatenate(hit_q)


def near_duplicate_pairs(
    pixels,
    threshold: float,
    margin: int = 2,
    tables: int = 12,
    bits: int = 24,
    seed: int = 0,
    chunk: int | None = None,
) -> pd.DataFrame:
    """Pairs ``(a, b, similarity)`` with ``a < b`` (row positions) of near duplicates, by LSH.

    ``pixels``: an ``(N, H, W, C)`` array or an :class:`imgpipe.validate.chunked.PixelSource`,
    read twice, ``chunk`` images at a time (default: 12 MiB of pixels), so memory holds only
    the per-image embeddings and tables; the pairs do not depend on the chunk size."""
    from imgpipe.validate.chunked import ExactRows, ProjectedBound, as_source, quantise, rows_per_chunk

    source = as_source(pixels)
    n = source.n
    if n < 2:
        return _pairs_frame(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    margin = _margin_for_shape(source.shape, margin)
    rows = chunk or rows_per_chunk(source.shape, cap=QUERY_ROWS)
    dim = GRID * GRID * source.shape[-1]
    # What stays in memory per image: the centred embedding quantised to int8 with its scale and
    # error bound (155 bytes; the query's filter), its projection for the first filter (44 bytes:
    # ProjectedBound), the tables (8 bytes per table) and a flag. The
    # exact float32 embeddings (588 bytes) go to ExactRows (a temporary file past 64 MiB) and are
    # read back for the keys, then for the candidates the filter lets through only.
    exact = ExactRows(n, dim)
    try:
        codes = np.empty((n, dim), np.int8)
        scale = np.empty(n, np.float32)
        bound = np.empty(n, np.float32)
        usable = np.empty(n, bool)
        for s, e, (part, part_spread) in source.map(centre_chunk, rows, margin=margin):
            exact.write(s, part)
            codes[s:e], scale[s:e], bound[s:e] = quantise(part)
            usable[s:e] = part_spread >= MIN_NORM
        planes = np.random.default_rng(seed).standard_normal((tables, bits, dim)).astype(np.float32)
        key_type = np.uint32 if bits <= 32 else np.uint64
        # In row blocks: all at once, the (rows x tables*bits) sign and uint64 arrays were 5.8 KB per
        # image (1.7 GB at 300,000), the stage's peak. Each row's keys do not depend on the block.
        keys = np.empty((n, tables), key_type)
        for s in range(0, n, KEY_BLOCK):
            keys[s : s + KEY_BLOCK] = lsh_keys(exact[s : s + KEY_BLOCK], planes, key_type)
        # Flat images sit in no bucket: the tables index the usable images only. (Overwriting their
        # sorted keys with a maximum unsorted the arrays, and searchsorted then gave hi < lo.)
        # One table at a time: the sort's transients are one column, not every table's.
        indexed = np.nonzero(usable)[0]
        index_type = np.int32 if n < 2**31 else np.int64  # positions: half the bytes of int64
        order = np.empty((tables, len(indexed)), index_type)
        sorted_keys = np.empty((tables, len(indexed)), key_type)
        for t in range(tables):
            column = keys[indexed, t]
            by_key = np.argsort(column, kind="stable")
            order[t] = indexed[by_key]
            sorted_keys[t] = column[by_key]
        del keys, column, by_key
        projected = ProjectedBound.of_codes(indexed, codes, scale, bound)
        hit_a, hit_b, hit_v = [], [], []
        for _, _, (a, b, query) in source.map(query_chunk, rows, margin=margin, planes=planes,
                                              sorted_keys=sorted_keys, order=order, usable=usable, codes=codes,
                                              scale=scale, bound=bound, threshold=threshold,
                                              projected=projected):
            sim = np.einsum("nd,nd->n", query, exact.read(b)) if len(b) else np.zeros(0, np.float32)
            hit = sim >= threshold
            hit_a.append(a[hit])
            hit_b.append(b[hit])
            hit_v.append(sim[hit])
    finally:
        exact.close()
    keys_found, sims = best_per_pair(np.concatenate(hit_a), np.concatenate(hit_b), np.concatenate(hit_v), n)
    return _pairs_frame(keys_found // n, keys_found % n, sims.astype(np.float64))


def brute_force_pairs(pixels: np.ndarray, threshold: float, margin: int = 2) -> pd.DataFrame:
    """The same criterion over all pairs (quadratic): the reference for recall and speed."""
    n = len(pixels)
    margin = _margin_for(pixels, margin)
    table = integral(pixels)
    centre, spread = embed(table, margin, margin, margin)
    best = np.full((n, n), -np.inf, np.float32)
    for oy, ox in offsets(margin):
        query, _ = embed(table, oy, ox, margin)
        np.maximum(best, query @ centre.T, out=best)
    best = np.maximum(best, best.T)  # a pair counts whichever image is shifted
    usable = spread >= MIN_NORM
    best[~usable] = -np.inf
    best[:, ~usable] = -np.inf
    a, b = np.nonzero(np.triu(best >= threshold, k=1))
    return _pairs_frame(a.astype(np.int64), b.astype(np.int64), best[a, b].astype(np.float64))


def _pairs_frame(a: np.ndarray, b: np.ndarray, sim: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"a": a.astype(np.int64), "b": b.astype(np.int64), "similarity": np.round(sim, 6)})


def component_groups(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Group label per row: the smallest position of its connected component over the pairs
    ``(a, b)``; -1 for rows in no pair."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    graph = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    first = np.full(n, n, dtype=np.int64)
    np.minimum.at(first, comp, np.arange(n))
    sizes = np.bincount(comp, minlength=n)
    return np.where(sizes[comp] > 1, first[comp], -1)


def exact_groups(sha: pd.Series) -> np.ndarray:
    """Group label per row for identical pixels (first member's position), -1 when unique."""
    codes, uniques = pd.factorize(sha, sort=False)
    first = np.full(len(uniques), -1, dtype=np.int64)
    for pos in range(len(codes) - 1, -1, -1):
        first[codes[pos]] = pos
    sizes = np.bincount(codes, minlength=len(uniques))
    return np.where(sizes[codes] > 1, first[codes], -1)
