"""Suspected wrong labels by confident learning (cleanlab) on out-of-sample probabilities.

The probabilities come from K-fold cross-validation of a cheap model, not from the main training
run: single-layer k-means features (Coates, Lee and Ng, 2011: contrast-normalised, whitened image
patches, soft-assigned to 256 centroids learnt without labels, pooled over the four quadrants,
square-rooted) and a
ridge classifier on them whose scores become probabilities through a softmax whose temperature is
fitted on the training folds. On the 50,000 CIFAR-10 training images this takes about a minute on
2 cores and reaches ~64% out-of-sample accuracy, enough for confident learning to put most
planted label swaps near the top of its ranking (README, "Validate and clean").

cleanlab's ``find_label_issues`` picks the suspects and ranks them by self-confidence (the
probability the model gives the label the image has); at most ``max_flag_fraction`` of the images
are kept, the least self-confident first, so the review list stays a size a person can work through.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from imgpipe.contracts import ITEM_ID, REVIEW_COLUMNS, SOURCE_PATH
from imgpipe.params.validate import LabelIssueParams

CENTROIDS = 256
SAMPLE_PATCHES = 100_000
CHUNK = 250  # images per feature chunk at 32x32: ~95 MB of patch x centroid transients (1,000: ~370 MB)
GRAM_CHUNK = 8192  # rows per float64 chunk of the ridge normal equations


def _patches(images: np.ndarray, size: int, stride: int) -> np.ndarray:
    windows = np.lib.stride_tricks.sliding_window_view(images, (size, size), axis=(1, 2))[:, ::stride, ::stride]
    n, h, w, c = windows.shape[:4]
    return windows.transpose(0, 1, 2, 4, 5, 3).reshape(n, h, w, size * size * c)


def drawn_patches(images: np.ndarray, size: int, image: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``_patches(images, size, 1)[image, y, x]`` without cutting out every patch first (that was
    315 MB for a 4,096-image chunk at 32x32, the stage's peak, to keep a few thousand): indexed
    on the strided view, so only the drawn patches are copied, in the same element order."""
    windows = np.lib.stride_tricks.sliding_window_view(images, (size, size), axis=(1, 2))
    drawn = windows[image, y, x]  # (k, C, size, size)
    return drawn.transpose(0, 2, 3, 1).reshape(len(drawn), size * size * images.shape[-1])


def _normalise(patches: np.ndarray) -> np.ndarray:
    p = patches.astype(np.float32)
    p -= p.mean(axis=-1, keepdims=True)
    p /= np.sqrt(p.var(axis=-1, keepdims=True) + 10.0)
    return p


FEATURE_SIDE = 32  # larger images are area-averaged down to about this side first


def shrink_factor(shape: tuple[int, ...]) -> int:
    """The integer factor images of ``shape`` are area-averaged by before their features (1 up
    to 63 pixels: the features were designed and tuned on 32x32 photographs; at 224 pixels the
    full-size patches would cost 60 times more for a cheap model's probabilities)."""
    return max(1, min(shape[:2]) // FEATURE_SIDE)


def shrink(pixels: np.ndarray, factor: int) -> np.ndarray:
    """``(N, H // f, W // f, C)`` uint8 block means (the remainder rows/columns are cut)."""
    if factor == 1:
        return pixels
    n, h, w, c = pixels.shape
    hh, ww = h // factor, w // factor
    blocks = pixels[:, : hh * factor, : ww * factor].reshape(n, hh, factor, ww, factor, c)
    return np.rint(blocks.mean(axis=(2, 4))).astype(np.uint8)


@dataclass
class KMeansModel:
    """What every chunk's features need: the patch geometry, the whitening and the centroids."""

    factor: int  # images are area-averaged by this first (:func:`shrink`)
    size: int
    stride: int
    mean: np.ndarray
    whiten: np.ndarray
    centres: np.ndarray
    c2: np.ndarray
    k: int


def patch_geometry(shape: tuple[int, ...]) -> tuple[int, int]:
    """Patch side and feature stride for images of ``shape`` ``(H, W, ...)``."""
    h, w = shape[:2]
    return max(2, min(6, min(h, w) // 2)), 1 if min(h, w) <= 16 else 2


def fit_kmeans(source, seed: int = 0) -> KMeansModel:
    """Whitening and centroids learnt without labels from a seeded sample of patches.

    The sample is the same as drawing ``SAMPLE_PATCHES`` of all the patches of 4,000 seeded
    images, but only the drawn patches are ever cut out (all of them at 224 pixels would be 20 GB)."""
    from sklearn.cluster import MiniBatchKMeans

    from imgpipe.validate.chunked import as_source, rows_per_chunk

    source = as_source(source)
    n = source.n
    factor = shrink_factor(source.shape)
    h, w, channels = source.shape[0] // factor, source.shape[1] // factor, source.shape[2]
    size, stride = patch_geometry((h, w))
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(n, min(n, 4000), replace=False))
    ph, pw = h - size + 1, w - size + 1
    total = len(pick) * ph * pw
    keep = min(total, SAMPLE_PATCHES, 100 * n)  # small sets: fewer patches and centroids
    chosen = np.sort(rng.choice(total, keep, replace=False))
    image, rest = np.divmod(chosen, ph * pw)
    py, px = np.divmod(rest, pw)
    sample = np.empty((keep, size * size * channels), np.uint8)
    step = rows_per_chunk(source.shape)
    for s in range(0, len(pick), step):  # the sampled images a chunk at a time
        lo, hi = np.searchsorted(image, [s, s + step])
        if lo == hi:
            continue
        pixels = shrink(source.read(pick[s : s + step]), factor)
        sample[lo:hi] = drawn_patches(pixels, size, image[lo:hi] - s, py[lo:hi], px[lo:hi])
    sample = _normalise(sample)
    mean = sample.mean(axis=0)
    eigval, eigvec = np.linalg.eigh(np.cov(sample - mean, rowvar=False).astype(np.float64))
    whiten = (eigvec @ np.diag(1.0 / np.sqrt(np.maximum(eigval, 0) + 0.1)) @ eigvec.T).astype(np.float32)
    k = min(CENTROIDS, max(2, n // 4))
    km = MiniBatchKMeans(k, init="k-means++" if n >= 5000 else "random", random_state=seed,
                         batch_size=4096, n_init=1, max_iter=10).fit((sample - mean) @ whiten)
    centres = km.cluster_centers_.astype(np.float32)
    return KMeansModel(factor, size, stride, mean, whiten, centres, (centres * centres).sum(axis=1), k)


def chunk_rows(shape: tuple[int, ...]) -> int:
    """Images per feature chunk: ``CHUNK`` (the transients are ~95 MB at 32x32), fewer when
    the pixels read for them would pass 64 MiB or the shrunk images are larger than 32x32."""
    factor = shrink_factor(shape)
    h, w = shape[0] // factor, shape[1] // factor
    return max(1, min(CHUNK, CHUNK * 32 * 32 // (h * w), (64 << 20) // int(np.prod(shape))))


def kmeans_chunk(pixels: np.ndarray, start: int, model: KMeansModel) -> np.ndarray:
    """``(len(pixels), 4 * CENTROIDS)`` float32 square-rooted features of one chunk."""
    size, stride, mean, whiten, centres, c2, k = (model.size, model.stride, model.mean, model.whiten,
                                                    model.centres, model.c2, model.k)
    pixels = shrink(pixels, model.factor)
    out = np.zeros((len(pixels), 4 * CENTROIDS), np.float32)
    p = _normalise(_patches(pixels, size, stride))
    b, ph, pw, d = p.shape
    z = (p.reshape(-1, d) - mean) @ whiten
    del p
    # The (patches x centroids) arrays are the stage's largest transients (per chunk of CHUNK
    # images: see there): computed in place, in the same order as the plain expression
    # sqrt(max(|z|^2 - 2 z.c + |c|^2, 0)), so the features keep their exact bits.
    dist = z @ centres.T
    dist *= 2
    np.subtract((z * z).sum(axis=1, keepdims=True), dist, out=dist)
    dist += c2
    np.maximum(dist, 0, out=dist)
    np.sqrt(dist, out=dist)
    del z
    np.subtract(dist.mean(axis=1, keepdims=True), dist, out=dist)
    act = np.maximum(dist, 0, out=dist).reshape(b, ph, pw, k)
    hh, hw = max(ph // 2, 1), max(pw // 2, 1)
    quads = [act[:, :hh, :hw], act[:, :hh, hw:], act[:, hh:, :hw], act[:, hh:, hw:]]
    for q, part in enumerate(quads):
        if part.size:
            out[:, q * CENTROIDS : q * CENTROIDS + k] = part.sum(axis=(1, 2))
    return out


def kmeans_features(pixels, seed: int = 0, store: bool = False, sqrt: bool = False):
    """``(N, 4 * CENTROIDS)`` float32 features, learnt without labels, computed a chunk of
    pixels at a time (``pixels``: an array or a :class:`imgpipe.validate.chunked.PixelSource`).
    ``sqrt``: square-rooted (what the probe uses). ``store``: a
    :class:`imgpipe.validate.chunked.RowStore` (on disk when large) instead of an array."""
    from imgpipe.validate.chunked import RowStore, as_source

    source = as_source(pixels)
    model = fit_kmeans(source, seed)
    out = RowStore(source.n, 4 * CENTROIDS, np.float32, None if store else 1 << 62)
    for s, e, features in source.map(kmeans_chunk, chunk_rows(source.shape), model=model):
        if sqrt:
            np.sqrt(features, out=features)
        out[s:e] = features
    return out if store else out.array()


def _softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
    z = scores * temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def out_of_sample_probabilities(features: np.ndarray, labels: np.ndarray, n_classes: int, folds: int,
                                seed: int = 0, ridge: float = 1.0) -> np.ndarray:
    """K-fold probabilities ``(N, n_classes)``: each row from a model that never saw it.

    Memory stays near one float32 copy of ``features`` whatever N: the ridge normal equations are
    summed in float64 over row chunks, and each fold's training Gram matrix is the total minus the
    fold's own (no per-fold copy of the training rows)."""
    from sklearn.model_selection import StratifiedKFold

    n = len(features)
    counts = np.bincount(labels, minlength=n_classes)
    k = int(min(folds, counts[counts > 0].min()))
    probs = np.full((n, n_classes), 1.0 / n_classes)
    if k < 2:
        return probs
    mean = np.zeros(features.shape[1])
    sq = np.zeros(features.shape[1])
    for s in range(0, n, GRAM_CHUNK):
        c = features[s : s + GRAM_CHUNK].astype(np.float64)
        mean += c.sum(axis=0)
        sq += (c * c).sum(axis=0)
    mean /= n
    std = np.sqrt(np.maximum(sq / n - mean * mean, 0)) + 1e-6

    def rows(idx: np.ndarray):  # standardised rows plus a bias column, in float64 chunks
        for s in range(0, len(idx), GRAM_CHUNK):
            part = idx[s : s + GRAM_CHUNK]
            c = (features[part].astype(np.float64) - mean) / std
            yield part, np.hstack([c, np.ones((len(c), 1))])

    def normal_equations(idx: np.ndarray):
        gram = np.zeros((features.shape[1] + 1,) * 2)
        rhs = np.zeros((features.shape[1] + 1, n_classes))
        for part, x in rows(idx):
            gram += x.T @ x
            rhs += x.T @ np.eye(n_classes)[labels[part]]
        return gram, rhs

    splitter = StratifiedKFold(k, shuffle=True, random_state=seed)
    fold_sets = [test for _, test in splitter.split(np.zeros(n), labels)]
    per_fold = [normal_equations(test) for test in fold_sets]
    gram_all = sum(g for g, _ in per_fold)
    rhs_all = sum(r for _, r in per_fold)
    temps = np.geomspace(0.5, 64, 40)
    for test, (gram_f, rhs_f) in zip(fold_sets, per_fold, strict=True):
        train = np.setdiff1d(np.arange(n), test, assume_unique=True)
        gram = gram_all - gram_f + ridge * len(train) / 100.0 * np.eye(len(gram_all))
        weights = np.linalg.solve(gram, rhs_all - rhs_f)
        fit_scores = np.vstack([x @ weights for _, x in rows(train)])
        nll = [-np.log(_softmax(fit_scores, t)[np.arange(len(train)), labels[train]] + 1e-12).mean() for t in temps]
        probs[test] = _softmax(np.vstack([x @ weights for _, x in rows(test)]), float(temps[int(np.argmin(nll))]))
    return probs


def rank_label_issues(labels: np.ndarray, probs: np.ndarray, max_flag_fraction: float) -> np.ndarray:
    """Row positions of suspected label errors, most suspicious (least self-confident) first."""
    from cleanlab.filter import find_label_issues

    present = np.unique(labels)
    if len(present) < 2:
        return np.zeros(0, dtype=np.int64)
    # cleanlab wants every class index present; compact to the classes that occur.
    remap = np.full(probs.shape[1], -1)
    remap[present] = np.arange(len(present))
    sub = probs[:, present]
    sub = sub / sub.sum(axis=1, keepdims=True)
    ranked = find_label_issues(remap[labels], sub, return_indices_ranked_by="self_confidence")
    limit = int(np.floor(max_flag_fraction * len(labels)))
    return np.asarray(ranked[:limit], dtype=np.int64)


def label_issue_findings(df: pd.DataFrame, pixels, classes: list[str], cfg: LabelIssueParams,
                         decision: str) -> tuple[pd.DataFrame, float]:
    """Review rows for suspected wrong labels (score = self-confidence, suggested = the model's
    class) and the cheap model's out-of-sample accuracy."""
    labels = df["label_index"].to_numpy(dtype=np.int64)
    if len(df) < 2 * cfg.folds or len(np.unique(labels)) < 2:
        return pd.DataFrame(columns=list(REVIEW_COLUMNS)), 0.0
    # 4 KB per image: in a temporary file when large (read back in row blocks by the probe)
    with kmeans_features(pixels, cfg.seed, store=True, sqrt=True) as features:
        probs = out_of_sample_probabilities(features, labels, len(classes), cfg.folds, cfg.seed)
    ranked = rank_label_issues(labels, probs, cfg.max_flag_fraction)
    given = probs[ranked, labels[ranked]]
    suggested = probs[ranked].argmax(axis=1)
    findings = pd.DataFrame({
        ITEM_ID: df[ITEM_ID].to_numpy()[ranked],
        SOURCE_PATH: df[SOURCE_PATH].to_numpy()[ranked],
        "check": "label_issue",
        "score": np.round(given, 6),
        "decision": decision,
        "group_id": "",
        "suggested_label": [classes[i] for i in suggested],
        "suggested_score": np.round(probs[ranked].max(axis=1), 6),
        "detail": [f"given {classes[g]} (p={p:.3f}), model says {classes[s]} (p={q:.3f})"
                   for g, p, s, q in zip(labels[ranked], given, suggested, probs[ranked].max(axis=1), strict=True)],
    })
    return findings, oos_accuracy(labels, probs)


def oos_accuracy(labels: np.ndarray, probs: np.ndarray) -> float:
    return float((probs.argmax(axis=1) == labels).mean()) if len(labels) else 0.0
