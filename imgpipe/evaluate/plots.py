"""The evaluate stage's figures as PNG files: readable offline, in `dvc plots show` and anywhere else.

matplotlib with the Agg backend (no display, no network), a fixed size per figure (``SIZES``, in
pixels), and no timestamp or version in the file, so the bytes follow the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

DPI = 100
# Pixel size of each figure (width, height); the tests hold the files to these.
SIZES = {
    "confusion": (800, 700),
    "confusion_normalized": (800, 700),
    "per_class": (900, 500),
    "reliability": (700, 600),
    "gallery": (800, 950),
    "label_errors": (800, 950),  # suspected test-label errors (imgpipe.evaluate.label_errors)
    "per_class_report": (1100, 700),  # per class, worst first (imgpipe.evaluate.per_class)
}
FILES = {name: f"{name}.png" for name in SIZES}
GALLERY_COLUMNS = 4
GALLERY_MAX = 16


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _figure(name: str):
    plt = _pyplot()
    width, height = SIZES[name]
    return plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)


def _save(fig, path: Path) -> None:
    plt = _pyplot()
    # metadata: no "Software" version line, so the bytes depend on the picture only.
    fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)


def confusion_png(cm: np.ndarray, classes: Sequence[str], path: Path, normalized: bool = False) -> None:
    """Actual (rows) against predicted (columns); ``normalized`` divides each row by its count."""
    n = len(classes)
    fig = _figure("confusion_normalized" if normalized else "confusion")
    ax = fig.add_axes((0.18, 0.2, 0.7, 0.72))
    data = cm / np.maximum(cm.sum(1, keepdims=True), 1) if normalized else cm.astype(float)
    top = 1.0 if normalized else max(float(data.max()), 1.0)
    image = ax.imshow(data, cmap="Blues", vmin=0, vmax=top, aspect="auto")
    small = 8 if n <= 12 else 6
    ticks = range(n) if n <= 40 else range(0, n, max(1, n // 20))
    ax.set_xticks(list(ticks), [classes[i] for i in ticks], rotation=45, ha="right", fontsize=small)
    ax.set_yticks(list(ticks), [classes[i] for i in ticks], fontsize=small)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    if n <= 15:
        for i in range(n):
            for j in range(n):
                value = data[i, j]
                text = f"{value:.2f}" if normalized else str(int(value))
                ax.text(j, i, text, ha="center", va="center", fontsize=small,
                        color="white" if value > top / 2 else "black")
    fig.colorbar(image, cax=fig.add_axes((0.9, 0.2, 0.025, 0.72)))
    total = int(cm.sum())
    accuracy = np.trace(cm) / total if total else 0.0
    title = "Confusion matrix, share of each actual class" if normalized else "Confusion matrix, image counts"
    ax.set_title(f"{title} ({total} test images, accuracy {accuracy:.3f})", fontsize=10)
    _save(fig, path)


def per_class_png(table: pd.DataFrame, path: Path) -> None:
    """Grouped bars: precision and recall per class, with the support under each name."""
    fig = _figure("per_class")
    ax = fig.add_axes((0.08, 0.25, 0.9, 0.67))
    n = len(table)
    x = np.arange(n)
    ax.bar(x - 0.2, table["precision"], 0.4, label="precision", color="#4c72b0")
    ax.bar(x + 0.2, table["recall"], 0.4, label="recall", color="#dd8452")
    labels = [f"{c}\n({s})" for c, s in zip(table["class"], table["support"], strict=True)] if n <= 20 \
        else list(table["class"])
    ax.set_xticks(x, labels, rotation=45 if n > 12 else 0, ha="right" if n > 12 else "center",
                  fontsize=8 if n <= 20 else 6)
    ax.set_ylim(0, 1.15)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("score")
    ax.legend(loc="upper right", ncol=2, fontsize=8)
    ax.set_title("Precision and recall per class (support in brackets)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)


def reliability_png(table: pd.DataFrame, ece: float, path: Path) -> None:
    """Accuracy against confidence per bin, with the diagonal of perfect calibration and the
    share of images per bin underneath."""
    fig = _figure("reliability")
    ax = fig.add_axes((0.12, 0.35, 0.83, 0.57))
    hist = fig.add_axes((0.12, 0.08, 0.83, 0.18), sharex=ax)
    width = float(table["upper"].iloc[0] - table["lower"].iloc[0])
    filled = table[table["count"] > 0]
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.bar(filled["lower"], filled["accuracy"], width, align="edge", edgecolor="black",
           color="#4c72b0", alpha=0.8, label="accuracy")
    ax.bar(filled["lower"], filled["confidence"] - filled["accuracy"], width, bottom=filled["accuracy"],
           align="edge", color="#c44e52", alpha=0.3, label="gap to confidence")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(f"Reliability diagram ({len(table)} bins, ECE {ece:.4f})", fontsize=10)
    total = max(int(table["count"].sum()), 1)
    hist.bar(table["lower"], table["count"] / total, width, align="edge", color="grey")
    hist.set_xlabel("confidence (top probability)")
    hist.set_ylabel("share")
    _save(fig, path)


def gallery_png(images: Sequence[np.ndarray], captions: Sequence[str], path: Path, title: str,
                figure: str = "gallery", empty: str = "no wrong predictions on the test split") -> None:
    """Up to ``GALLERY_MAX`` images in a grid, each captioned; an empty gallery says so."""
    fig = _figure(figure)
    fig.suptitle(title, fontsize=12)
    if not len(images):
        fig.text(0.5, 0.5, empty, ha="center", va="center", fontsize=12)
    rows = max(1, -(-min(len(images), GALLERY_MAX) // GALLERY_COLUMNS))
    rows = max(rows, 4)
    for k, (image, caption) in enumerate(zip(images[:GALLERY_MAX], captions, strict=False)):
        ax = fig.add_subplot(rows, GALLERY_COLUMNS, k + 1)
        pixels = np.asarray(image)
        if pixels.ndim == 3 and pixels.shape[2] == 1:
            pixels = pixels[:, :, 0]
        ax.imshow(pixels, cmap="gray" if pixels.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(caption, fontsize=8)
        ax.axis("off")
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.9, hspace=0.45, wspace=0.1)
    _save(fig, path)
