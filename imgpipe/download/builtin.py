"""The built-in offline source: scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes).

It is written out the way a private collection arrives: one PNG per image plus a separate
``labels.csv``, so the default pipeline exercises the same file-based path as user data.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from PIL import Image

DIGITS_CLASSES = [str(d) for d in range(10)]
DIGITS_LABEL_FILE = "labels.csv"


def write_digits(files_dir: Path) -> dict:
    """Write ``images/digit_NNNN.png`` and ``labels.csv``; return facts for ``source.json``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # The set stores 0..16 intensities, ink high; scale to 8-bit and keep ink dark on white
    # like scanned handwriting.
    pixels = 255 - np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    images_dir = files_dir / "images"
    images_dir.mkdir(parents=True)
    rows = []
    for index, (image, target) in enumerate(zip(pixels, bunch.target, strict=True)):
        name = f"images/digit_{index:04d}.png"
        buffer = io.BytesIO()
        Image.fromarray(image, mode="L").save(buffer, format="PNG", optimize=False)
        (files_dir / name).write_bytes(buffer.getvalue())
        rows.append((name, DIGITS_CLASSES[int(target)]))
    with open(files_dir / DIGITS_LABEL_FILE, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["file", "label"])
        writer.writerows(rows)
    return {"classes": DIGITS_CLASSES, "label_file": DIGITS_LABEL_FILE, "count": len(rows)}
