"""Generated photographs-like images with planted faults, for the cleaning checks' tests."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter


def smooth_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """Unrelated images: a random 6x6 colour field upsampled (smooth shapes) plus sensor noise."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        field = rng.integers(20, 236, (6, 6, 3), dtype=np.uint8)
        img = np.asarray(Image.fromarray(field).resize((size, size), Image.BICUBIC), dtype=np.float64)
        img += rng.normal(0, 8, img.shape)
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def shifted(img: np.ndarray, dx: int, dy: int) -> np.ndarray:
    h, w = img.shape[:2]
    p = np.pad(img, ((abs(dy),) * 2, (abs(dx),) * 2, (0, 0)), mode="edge")
    return p[abs(dy) - dy : abs(dy) - dy + h, abs(dx) - dx : abs(dx) - dx + w].copy()


def reencoded(img: np.ndarray, quality: int = 50) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def resized(img: np.ndarray, small: int = 20) -> np.ndarray:
    h, w = img.shape[:2]
    return np.asarray(Image.fromarray(img).resize((small, small), Image.BILINEAR).resize((w, h), Image.BILINEAR))


def brightened(img: np.ndarray, factor: float = 1.15) -> np.ndarray:
    return np.asarray(ImageEnhance.Brightness(Image.fromarray(img)).enhance(factor))


def blurred(img: np.ndarray, radius: float = 2.0) -> np.ndarray:
    return np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(radius)))


def textured_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """Unrelated images with detail at several scales (coarse colour fields at 4x4, 8x8 and 16x16
    upsampled and summed, plus noise): crops of them change their content, unlike flat ones."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        img = np.zeros((size, size, 3))
        for cells, amp in ((4, 1.0), (8, 0.6), (16, 0.35)):
            field = rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8)
            img += amp * (np.asarray(Image.fromarray(field).resize((size, size), Image.BICUBIC), np.float64) - 128)
        img = 128 + img * 0.6 + rng.normal(0, 4, img.shape)
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def cropped(img: np.ndarray, sides: tuple[float, float, float, float]) -> np.ndarray:
    """Cut shares ``(top, bottom, left, right)`` off the sides and scale back to full size."""
    h, w = img.shape[:2]
    t, b, left, r = sides
    box = (left * w, t * h, w - r * w, h - b * h)
    return np.asarray(Image.fromarray(img).resize((w, h), Image.BICUBIC, box=box))


def enhanced(img: np.ndarray, kind: str, factor: float) -> np.ndarray:
    """PIL's ``Brightness``/``Contrast``/``Color`` (saturation) enhancement."""
    return np.asarray(getattr(ImageEnhance, kind)(Image.fromarray(img)).enhance(factor))


def hue_turned(img: np.ndarray, steps: int = 10) -> np.ndarray:
    """Hue turned by ``steps``/256 of the circle."""
    hsv = np.asarray(Image.fromarray(img).convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int64) + steps) % 256
    return np.asarray(Image.fromarray(hsv, "HSV").convert("RGB"))
