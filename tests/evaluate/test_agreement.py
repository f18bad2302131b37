"""Agreement statistics against published worked examples; Dawid-Skene against a planted bad annotator."""

from __future__ import annotations

import numpy as np
import pytest

from imgpipe.labels.agreement import dawid_skene, fleiss_kappa, krippendorff_alpha, vote_counts


def test_fleiss_kappa_worked_example():
    # Fleiss (1971) as worked on Wikipedia's "Fleiss' kappa" page: 10 items, 14 raters, 5 categories.
    counts = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
              [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert fleiss_kappa(np.array(counts)) == pytest.approx(0.210, abs=5e-4)


def test_krippendorff_alpha_worked_example():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability", nominal data with missing
    # values: 4 observers, 12 units, values 1..5; alpha = 0.743.
    table = [[1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
             [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
             [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
             [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None]]
    counts = np.zeros((12, 5))
    for row in table:
        for unit, value in enumerate(row):
            if value is not None:
                counts[unit, value - 1] += 1
    assert krippendorff_alpha(counts) == pytest.approx(0.743, abs=5e-4)


def test_agreement_undefined_without_repeated_votes():
    assert fleiss_kappa(np.array([[1, 0], [0, 1]])) is None
    assert krippendorff_alpha(np.array([[1, 0], [0, 1]])) is None
    assert fleiss_kappa(np.array([[2, 0], [0, 2]])) == 1.0


def test_dawid_skene_outvotes_a_mostly_wrong_annotator():
    rng = np.random.default_rng(0)
    n, k = 300, 4
    truth = rng.integers(0, k, n)
    items, annotators, labels = [], [], []
    for i in range(n):
        for a, accuracy in ((0, 0.85), (1, 0.85), (2, 0.2)):
            wrong = [c for c in range(k) if c != truth[i]]
            items.append(i)
            annotators.append(a)
            labels.append(truth[i] if rng.random() < accuracy else rng.choice(wrong))
    posterior, confusion = dawid_skene(items, annotators, labels, n, 3, k)
    counts = vote_counts(np.array(items), np.array(labels), n, k)
    majority_right = ((counts.argmax(1) == truth) & ((counts == counts.max(1, keepdims=True)).sum(1) == 1)).mean()
    ds_right = (posterior.argmax(1) == truth).mean()
    assert ds_right > majority_right + 0.05
    accuracy = [float(np.mean(np.diag(c))) for c in confusion]
    assert accuracy[2] < 0.35 < 0.7 < min(accuracy[:2])
