"""Images that belong to no class (``check`` = ``ood``): a crawled logo, a screenshot, a photo of
something else among the dataset's photographs.

Each image becomes a cheap embedding: its pixels mean-pooled on a ``grid x grid`` raster (per
channel, scaled to 0..1), projected on the dataset's first ``components`` principal axes. The
score is the image's robust Mahalanobis distance (squared) from the bulk of the dataset: the
location and covariance are fitted by the Minimum Covariance Determinant (scikit-learn's
``MinCovDet``, seeded) on ``support_fraction`` of the images, so a cluster of foreign images
(500 digits among 10,000 photographs, all alike) does not widen the covariance that should
expose them -- which is why a k-nearest-neighbour distance, that finds each planted image's
look-alikes, misses them (``benchmarks/bench_ood.py`` measures both). An image is a suspect
when its distance exceeds the chi-square quantile ``1 - max_p_value`` of a Gaussian bulk; the
suspects are ranked by distance and at most ``max_flag_fraction`` of the images are flagged.

Deterministic: a fixed seed, a fixed row order, scores rounded before ranking, ties broken by row.
Flat and constant images do not crash it (a rank-deficient embedding keeps its nonzero axes;
a set with no variance at all has no suspects).
"""

from __future__ import annotations

import numpy as np

from imgpipe.validate.checks.base import (
    POLICY_DECISION,
    Check,
    CheckContext,
    CheckResult,
    empty_findings,
    findings_frame,
    register,
)
from imgpipe.validate.chunked import RowStore, rows_per_chunk

SCORE_DIGITS = 6
BLOCK = 8192  # feature rows per block of the scatter matrix (fixed: the sums do not depend on the chunking)


def pooled(pixels: np.ndarray, grid: int) -> np.ndarray:
    """``(N, grid*grid*C)`` float64 means of the pixels on a ``grid x grid`` raster, in 0..1."""
    n, h, w = pixels.shape[:3]
    x = pixels.reshape(n, h, w, -1).astype(np.float64)
    gh, gw = min(grid, h), min(grid, w)
    rows = np.linspace(0, h, gh + 1).astype(int)
    cols = np.linspace(0, w, gw + 1).astype(int)
    sums = np.add.reduceat(np.add.reduceat(x, rows[:-1], axis=1), cols[:-1], axis=2)
    area = np.outer(np.diff(rows), np.diff(cols))[None, :, :, None]
    return (sums / area / 255.0).reshape(n, -1)


def pooled_chunk(pixels: np.ndarray, start: int, grid: int) -> np.ndarray:
    """:func:`pooled` as a chunk function (:meth:`imgpipe.validate.chunked.PixelSource.map`)."""
    return pooled(pixels, grid)


def ood_scores(features, components: int, support_fraction: float, seed: int,
               fit_sample: int = 10_000) -> tuple[np.ndarray, int]:
    """Robust squared Mahalanobis distance per row, and the number of axes it was measured on
    (0: no variance, every score 0). The robust fit sees a seeded sample of at most
    ``fit_sample`` rows (its cost grows with the rows; the bulk's shape does not need them all).

    ``features``: an array or a :class:`imgpipe.validate.chunked.RowStore`, read in fixed blocks
    of rows: the principal axes come from the eigenvectors of the centred scatter matrix
    (``dim x dim``) summed block by block, so memory holds the features' projection on
    ``components`` axes, not a copy of the features."""
    from sklearn.covariance import MinCovDet

    n, dim = features.shape
    mean = np.zeros(dim)
    for s in range(0, n, BLOCK):
        mean += features[s : s + BLOCK].sum(axis=0)
    mean /= max(n, 1)
    scatter = np.zeros((dim, dim))
    for s in range(0, n, BLOCK):
        centred = features[s : s + BLOCK] - mean
        scatter += centred.T @ centred
    eigval, eigvec = np.linalg.eigh(scatter)
    top = np.argsort(-eigval, kind="stable")
    sv = np.sqrt(np.maximum(eigval[top], 0))
    rank = int((sv > max(sv[0], 1e-12) * 1e-6).sum()) if len(sv) and sv[0] > 1e-9 else 0
    d = min(components, rank, max(n - 2, 0))
    if d == 0:
        return np.zeros(n), 0
    axes = eigvec[:, top[:d]]
    proj = np.empty((n, d))
    for s in range(0, n, BLOCK):
        proj[s : s + BLOCK] = (features[s : s + BLOCK] - mean) @ axes
    fit = proj if n <= fit_sample else proj[np.sort(np.random.default_rng(seed).choice(n, fit_sample, replace=False))]
    mcd = MinCovDet(random_state=seed, support_fraction=support_fraction).fit(fit)
    return np.asarray(mcd.mahalanobis(proj), dtype=np.float64), d


def rank_ood(scores: np.ndarray, dims: int, max_p_value: float, max_flag_fraction: float) -> np.ndarray:
    """Row positions of the suspects, farthest first (ties: lower row), capped by the share."""
    from scipy.stats import chi2

    if dims == 0 or not len(scores):
        return np.zeros(0, dtype=np.int64)
    rounded = np.round(scores, SCORE_DIGITS)
    cut = float(chi2.isf(max_p_value, dims))
    above = np.flatnonzero(rounded > cut)
    order = above[np.lexsort((above, -rounded[above]))]
    return order[: int(np.floor(max_flag_fraction * len(scores)))]


@register
class OodCheck(Check):
    name = "ood"
    section = "ood"
    writes = ("ood",)
    order = 45
    needs_pixels = True

    def run(self, ctx: CheckContext) -> CheckResult:
        cfg = self.params(ctx.cfg)
        n = len(ctx.rows)
        if not ctx.has_pixels or n < max(cfg.min_images, 3):
            return CheckResult(empty_findings(), {"ood_flagged": 0})
        source = ctx.pixel_source()
        dim = min(cfg.grid, source.shape[0]) * min(cfg.grid, source.shape[1]) * source.shape[2]
        with RowStore(n, dim, np.float64) as features:  # 1.5 KB per image: on disk when large
            for s, e, part in source.map(pooled_chunk, rows_per_chunk(source.shape), grid=cfg.grid):
                features[s:e] = part
            scores, dims = ood_scores(features, cfg.components, cfg.support_fraction, cfg.seed, cfg.fit_sample)
        rows = rank_ood(scores, dims, cfg.max_p_value, cfg.max_flag_fraction)
        labels = ctx.rows["label"].astype(str).to_numpy() if "label" in ctx.rows else np.full(n, "?")
        findings = findings_frame(
            ctx.rows, rows, "ood", np.round(scores[rows], SCORE_DIGITS), POLICY_DECISION[cfg.on_ood],
            detail=[f"far from every class (robust distance^2 {scores[r]:.1f} on {dims} axes; labelled {labels[r]})"
                    for r in rows]) if len(rows) else empty_findings()
        median = float(np.median(scores)) if n else 0.0
        return CheckResult(findings, {"ood_flagged": int(len(rows))},
                           detail={"axes": dims, "median_score": round(median, 3),
                                   "top": [ctx.rows["item_id"].iloc[r] for r in rows[:20]]})
