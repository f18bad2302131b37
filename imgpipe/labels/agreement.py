"""Annotator agreement and reliability-weighted voting for labels from several annotators.

- :func:`dawid_skene`: EM estimate of each annotator's confusion matrix and of each image's class
  posterior (Dawid and Skene, 1979), started from the vote shares; a smoothing count keeps every
  confusion entry positive so one sloppy label never zeroes a class.
- :func:`fleiss_kappa`: Fleiss' kappa over images with two or more votes, in the form that allows a
  varying number of votes per image (each image's agreement uses its own vote count).
- :func:`krippendorff_alpha`: nominal Krippendorff's alpha from the coincidence matrix (missing
  votes allowed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np


def vote_counts(items: np.ndarray, labels: np.ndarray, n_items: int, n_classes: int) -> np.ndarray:
    counts = np.zeros((n_items, n_classes))
    np.add.at(counts, (items, labels), 1.0)
    return counts


def fleiss_kappa(counts: np.ndarray) -> float | None:
    counts = np.asarray(counts, float)
    n = counts.sum(1)
    counts, n = counts[n >= 2], n[n >= 2]
    if not len(n):
        return None
    p = counts.sum(0) / counts.sum()
    p_i = ((counts ** 2).sum(1) - n) / (n * (n - 1))
    expected = float((p ** 2).sum())
    if expected >= 1:
        return 1.0 if p_i.mean() >= 1 else None
    return float((p_i.mean() - expected) / (1 - expected))


def krippendorff_alpha(counts: np.ndarray) -> float | None:
    counts = np.asarray(counts, float)
    n = counts.sum(1)
    counts, n = counts[n >= 2], n[n >= 2]
    if not len(n):
        return None
    weighted = counts / (n - 1)[:, None]
    coincidence = weighted.T @ counts - np.diag(weighted.sum(0))
    marginals = coincidence.sum(1)
    total = marginals.sum()
    expected = (total * total - (marginals ** 2).sum()) / (total - 1)
    if expected <= 0:
        return 1.0 if np.trace(coincidence) == total else None
    return float(1 - (total - np.trace(coincidence)) / expected)


def dawid_skene(items: np.ndarray, annotators: np.ndarray, labels: np.ndarray, n_items: int,
                n_annotators: int, n_classes: int, *, iterations: int = 100, tol: float = 1e-6,
                smoothing: float = 0.01, prior_right: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """``(posterior (items, classes), confusion (annotators, true, given))``."""
    items, annotators, labels = (np.asarray(a, np.int64) for a in (items, annotators, labels))
    posterior = vote_counts(items, labels, n_items, n_classes)
    posterior /= np.maximum(posterior.sum(1, keepdims=True), 1)
    for _ in range(iterations):
        prior = (posterior.sum(0) + smoothing) / (n_items + smoothing * n_classes)
        # A weak prior that an annotator is better than chance: a pseudo-count of ``prior_right``
        # on the diagonal and one wrong vote spread over the other classes. With little data the
        # vote then stays close to majority; with more, each annotator's own record takes over.
        confusion = np.full((n_annotators, n_classes, n_classes), 1.0 / max(n_classes - 1, 1))
        confusion[:, np.arange(n_classes), np.arange(n_classes)] = prior_right
        np.add.at(confusion, (annotators, slice(None), labels), posterior[items])
        confusion /= confusion.sum(2, keepdims=True)
        log_post = np.tile(np.log(prior), (n_items, 1))
        np.add.at(log_post, items, np.log(confusion[annotators, :, labels]))
        log_post -= log_post.max(1, keepdims=True)
        updated = np.exp(log_post)
        updated /= updated.sum(1, keepdims=True)
        change = float(np.abs(updated - posterior).max()) if n_items else 0.0
        posterior = updated
        if change < tol:
            break
    return posterior, confusion


# ---------------------------------------------------------------------------------------------
# From the votes table


def clean_votes(per_item: Mapping[str, Iterable[tuple[str, str]]]) -> dict[str, dict[str, str]]:
    """Per image, ``{annotator: label}`` from its filled human votes; images where one annotator
    gives two different labels (a conflict the resolver reports) are left out."""
    out: dict[str, dict[str, str]] = {}
    for item_id, votes in per_item.items():
        by_annotator: dict[str, set[str]] = {}
        for annotator, label in votes:
            if label:
                by_annotator.setdefault(annotator, set()).add(label)
        if by_annotator and all(len(labels) == 1 for labels in by_annotator.values()):
            out[item_id] = {a: next(iter(labels)) for a, labels in by_annotator.items()}
    return out


def _index(votes: Mapping[str, Mapping[str, str]]):
    item_ids = sorted(votes)
    annotators = sorted({a for v in votes.values() for a in v})
    labels = sorted({label for v in votes.values() for label in v.values()})
    a_index = {a: i for i, a in enumerate(annotators)}
    l_index = {label: i for i, label in enumerate(labels)}
    rows = [(i, a_index[a], l_index[label]) for i, item in enumerate(item_ids) for a, label in sorted(votes[item].items())]
    arr = np.array(rows, dtype=np.int64).reshape(-1, 3)
    return item_ids, annotators, labels, arr


def reliability_posteriors(votes: Mapping[str, Mapping[str, str]]) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Dawid-Skene over every image's votes: ``({item_id: {label: posterior}}, {annotator:
    estimated accuracy})``; the accuracy is the diagonal of the annotator's confusion matrix
    weighted by the estimated class shares."""
    if not votes:
        return {}, {}
    item_ids, annotators, labels, arr = _index(votes)
    posterior, confusion = dawid_skene(arr[:, 0], arr[:, 1], arr[:, 2], len(item_ids), len(annotators), len(labels))
    prior = posterior.mean(0)
    accuracy = {a: float((np.diag(confusion[k]) * prior).sum()) for k, a in enumerate(annotators)}
    return ({item: {label: float(posterior[i, j]) for j, label in enumerate(labels)}
             for i, item in enumerate(item_ids)}, accuracy)


def annotator_report(votes: Mapping[str, Mapping[str, str]], resolved: Mapping[str, str],
                     estimated_accuracy: Mapping[str, float] | None = None, lowest: int = 20) -> dict:
    """Per annotator: labels cast, and agreement with the resolved label on images that someone
    else labelled too; over the set: Fleiss' kappa and Krippendorff's alpha on the images with
    two or more votes; and the images with the lowest agreement."""
    shared = {item: v for item, v in votes.items() if len(v) >= 2}
    per: dict[str, dict] = {}
    for item, v in votes.items():
        for annotator, label in v.items():
            entry = per.setdefault(annotator, {"annotations": 0, "shared": 0, "agreed": 0})
            entry["annotations"] += 1
            if item in shared and item in resolved:
                entry["shared"] += 1
                entry["agreed"] += label == resolved[item]
    annotators = []
    for name in sorted(per):
        entry = per[name]
        row = {
            "annotator": name or "(anonymous)",
            "annotations": entry["annotations"],
            "on_shared_images": entry["shared"],
            "agreement": round(entry["agreed"] / entry["shared"], 6) if entry["shared"] else None,
        }
        if estimated_accuracy is not None:
            row["estimated_accuracy"] = round(estimated_accuracy.get(name, float("nan")), 6)
        annotators.append(row)
    kappa = alpha = None
    if shared:
        _, _, labels, arr = _index(shared)
        counts = vote_counts(arr[:, 0], arr[:, 2], len(shared), len(labels))
        kappa, alpha = fleiss_kappa(counts), krippendorff_alpha(counts)
    rows = []
    for item, v in shared.items():
        tally: dict[str, int] = {}
        for label in v.values():
            tally[label] = tally.get(label, 0) + 1
        rows.append({
            "item_id": item,
            "resolved": resolved.get(item, ""),
            "agreement": round(max(tally.values()) / len(v), 6),
            "votes": "; ".join(f"{a or '(anonymous)'}: {label}" for a, label in sorted(v.items())),
        })
    rows.sort(key=lambda r: (r["agreement"], r["item_id"]))
    return {
        "annotators": annotators,
        "images_with_votes": len(votes),
        "images_with_several_votes": len(shared),
        "fleiss_kappa": None if kappa is None else round(kappa, 6),
        "krippendorff_alpha": None if alpha is None else round(alpha, 6),
        "lowest_agreement": rows[:lowest],
    }
