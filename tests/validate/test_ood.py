"""The `ood` check: images from another distribution planted among generated photographs are
found first, a clean set raises no alarm beyond the cap, flat images do not crash it, and the
findings are the same whatever the BLAS thread count."""

from __future__ import annotations

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from imgpipe.params.validate import OodParams, ValidateParams
from imgpipe.validate.checks import registered_checks
from imgpipe.validate.checks.base import CheckContext
from imgpipe.validate.checks.ood import OodCheck, pooled

from planted import smooth_images

N = 300


def _strokes(n: int, seed: int = 9) -> np.ndarray:
    """Digit-like images: white strokes on black, grey only (nothing like the colour fields)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 32, 32, 3), np.uint8)
    for i in range(n):
        for _ in range(3):
            r, c = rng.integers(4, 28, 2)
            if rng.random() < 0.5:
                out[i, r:r + 3, 4:28] = 255
            else:
                out[i, 4:28, c:c + 3] = 255
    return out


def _ctx(images: np.ndarray, **ood) -> CheckContext:
    n = len(images)
    rows = pd.DataFrame({"item_id": [f"img/{i:04d}.png" for i in range(n)],
                         "source_path": [f"img/{i:04d}.png" for i in range(n)],
                         "label": [f"c{i % 3}" for i in range(n)], "label_index": np.arange(n) % 3})
    return CheckContext(rows=rows, classes=["c0", "c1", "c2"], cfg=ValidateParams(ood=OodParams(**ood)),
                        pixel_loader=lambda pos: images[pos])


def test_it_is_registered_with_its_params():
    assert any(isinstance(c, OodCheck) for c in registered_checks())
    assert OodCheck().enabled(ValidateParams()) and not OodCheck().enabled(ValidateParams(ood=OodParams(enabled=False)))


def test_planted_foreign_images_are_found_first():
    images = smooth_images(N, seed=1)
    planted = np.array([5, 50, 120, 121, 200, 299])
    images[planted] = _strokes(len(planted))
    result = OodCheck().run(_ctx(images, max_flag_fraction=0.03, on_ood="quarantine"))
    found = result.findings
    assert set(found["item_id"].head(len(planted))) == {f"img/{i:04d}.png" for i in planted}
    assert len(found) <= int(0.03 * N) and (found["check"] == "ood").all()
    assert (found["decision"] == "quarantined").all() and found["score"].is_monotonic_decreasing
    assert result.counters == {"ood_flagged": len(found)}


def test_a_clean_set_raises_no_alarm_beyond_the_cap():
    found = OodCheck().run(_ctx(smooth_images(N, seed=2))).findings
    assert len(found) <= int(0.01 * N)


def test_flat_and_constant_images_do_not_crash_it():
    constant = np.full((80, 32, 32, 3), 128, np.uint8)
    assert len(OodCheck().run(_ctx(constant)).findings) == 0
    images = smooth_images(100, seed=3)
    images[:5] = 0  # a few black frames among photographs
    images[5:8] = 255
    OodCheck().run(_ctx(images))
    grey = np.repeat(smooth_images(60, seed=4)[..., :1], 1, axis=3)  # one channel, 60 images
    OodCheck().run(_ctx(grey))
    assert len(OodCheck().run(_ctx(smooth_images(10, seed=5))).findings) == 0  # below min_images


def test_pooling_handles_sizes_that_do_not_divide():
    x = np.arange(2 * 10 * 7 * 3, dtype=np.uint8).reshape(2, 10, 7, 3)
    f = pooled(x, 4)
    assert f.shape == (2, 4 * 4 * 3) and np.isclose(f.mean(), x.astype(float).mean() / 255, rtol=0.05)


def test_same_findings_whatever_the_thread_count():
    images = smooth_images(N, seed=6)
    images[[7, 70]] = _strokes(2)
    frames = []
    for threads in (1, 2):
        with threadpool_limits(limits=threads):
            frames.append(OodCheck().run(_ctx(images, max_flag_fraction=0.03)).findings)
    pd.testing.assert_frame_equal(frames[0], frames[1])


def test_a_sampled_robust_fit_still_finds_them():
    images = smooth_images(N, seed=7)
    planted = np.array([11, 111, 222])
    images[planted] = _strokes(len(planted), seed=3)
    found = OodCheck().run(_ctx(images, max_flag_fraction=0.02, fit_sample=150)).findings
    assert set(found["item_id"].head(3)) == {f"img/{i:04d}.png" for i in planted}
