"""Turn encoded images, PIL images or arrays into the pixels the model sees.

:func:`to_model_pixels` is the one code path from "an image" to "model pixels": preprocess calls
it for every item and a future ``predict`` must call it too, so training and serving can never
disagree about orientation, colour conversion, alpha or resizing.

Bad input raises :class:`Reject` with a stable ``code`` (see ``REJECT_CODES``) and a detail, so
preprocess can record a precise reason instead of crashing.
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from imgpipe.params.preprocess import PreprocessParams

# Only these decoders are ever tried. Besides speed (fewer plugins probed per file) this keeps
# formats that shell out or are rarely hardened (EPS via Ghostscript, ...) away from untrusted data.
SUPPORTED_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "DIB", "TIFF", "WEBP", "PPM")

# The formats an extension may honestly hold. MPO is how Pillow reports camera JPEGs that carry
# extra preview frames (the JPEG opener returns them); they are JPEG files.
SUFFIX_FORMATS: dict[str, frozenset[str]] = {
    ".jpg": frozenset({"JPEG", "MPO"}),
    ".jpeg": frozenset({"JPEG", "MPO"}),
    ".png": frozenset({"PNG"}),
    ".gif": frozenset({"GIF"}),
    ".bmp": frozenset({"BMP", "DIB"}),
    ".tif": frozenset({"TIFF"}),
    ".tiff": frozenset({"TIFF"}),
    ".webp": frozenset({"WEBP"}),
    ".ppm": frozenset({"PPM"}),
    ".pgm": frozenset({"PPM"}),
    ".pbm": frozenset({"PPM"}),
}

# Magic numbers, only to word the reason for a file Pillow cannot open: a file that starts like
# a PNG but does not open is a damaged PNG, not "not an image".
_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)

EMPTY = "empty"
TRUNCATED = "truncated"
NOT_AN_IMAGE = "not_an_image"
FORMAT_MISMATCH = "format_mismatch"
TOO_LARGE = "too_large"
CORRUPT = "corrupt"
UNREADABLE = "unreadable"
REJECT_CODES = (EMPTY, TRUNCATED, NOT_AN_IMAGE, FORMAT_MISMATCH, TOO_LARGE, CORRUPT, UNREADABLE)

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
EXIF_ORIENTATION = 0x0112
# Orientations 5..8 swap width and height.
_TRANSPOSED = {5, 6, 7, 8}
# torchvision's Resize default, so a model trained elsewhere on the same data sees the same kind
# of pixels.
RESAMPLE = Image.Resampling.BILINEAR


class Reject(ValueError):
    """An input that cannot become model pixels; ``str()`` is ``"<code>: <detail>"``."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Original:
    """What the source image was, before any conversion (width/height as displayed)."""

    width: int
    height: int
    mode: str
    format: str


def sniff_magic(data: bytes) -> str | None:
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def open_image(data: bytes, max_pixels: int, suffix: str | None = None) -> Image.Image:
    """Open (not decode) ``data``; check emptiness, format, extension and pixel count.

    Only the header is read, so a decompression bomb is refused before its pixels are expanded.
    ``suffix`` (``".png"``) enables the check that the content matches the extension.
    """
    if not data:
        raise Reject(EMPTY, "zero-byte file")
    try:
        im = Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own guard (2x Image.MAX_IMAGE_PIXELS, or the warning when warnings are errors).
        raise Reject(TOO_LARGE, exception_text(exc)) from None
    except UnidentifiedImageError:
        magic = sniff_magic(data)
        if magic is None:
            raise Reject(NOT_AN_IMAGE, f"content is none of {', '.join(SUPPORTED_FORMATS)}") from None
        raise Reject(CORRUPT, f"starts like {magic} but its header cannot be read") from None
    except (OSError, EOFError, ValueError, SyntaxError, struct.error, IndexError) as exc:
        raise _load_error(exc, sniff_magic(data) or "image") from None
    fmt = im.format or ""
    if suffix is not None:
        allowed = SUFFIX_FORMATS.get(suffix.lower())
        # Unknown extensions claim nothing, so they cannot lie; known ones must match the content.
        if allowed is not None and fmt not in allowed:
            raise Reject(FORMAT_MISMATCH, f"extension {suffix} but content is {fmt}")
    check_pixels(im.size, max_pixels)
    return im


def check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise Reject(TOO_LARGE, f"{width}x{height} = {width * height} pixels > max_pixels {max_pixels}")
    if width <= 0 or height <= 0:
        raise Reject(CORRUPT, f"invalid size {width}x{height}")


def exception_text(exc: BaseException) -> str:
    """``str(exc)`` without object addresses (``<... at 0x7f...>``), which differ per run and
    would make the rejects table differ too."""
    return _ADDRESS.sub("", str(exc)) or type(exc).__name__


def _load_error(exc: BaseException, what: str) -> Reject:
    message = exception_text(exc)
    lowered = message.lower()
    if isinstance(exc, EOFError) or any(
        word in lowered for word in ("truncat", "eof", "not enough", "could not create decoder")
    ):
        return Reject(TRUNCATED, f"{what} data ends early ({message})")
    return Reject(CORRUPT, f"{what} data cannot be decoded ({message})")


def exif_orientation(im: Image.Image) -> int:
    """EXIF orientation 1..8 (1 = as stored); cheap when the image carries no EXIF."""
    if "exif" not in im.info and im.format != "TIFF":
        return 1
    try:
        value = im.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not cost the image
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def decode_with_original(
    data: bytes, cfg: PreprocessParams, suffix: str | None = None
) -> tuple[np.ndarray, Original]:
    """:func:`to_model_pixels` for encoded bytes, plus what the original was.

    ``suffix`` turns on the extension-versus-content check (preprocess knows the file name).
    """
    fast = _plain_jpeg(data, cfg, suffix)
    if fast is not None:
        return fast
    im = open_image(data, cfg.max_pixels, suffix)
    # Header facts first: decoding may draft a JPEG to a smaller size and a GIF may change mode.
    (width, height), mode, fmt = im.size, im.mode, im.format or ""
    pixels = to_model_pixels(im, cfg)
    # Asked after decoding: a PNG may store its EXIF after the pixel data.
    if exif_orientation(im) in _TRANSPOSED:
        width, height = height, width
    return pixels, Original(width, height, mode, fmt)


# JPEG markers: start-of-frame kinds Pillow decodes with libjpeg's defaults (baseline, extended,
# progressive), and the stand-alone markers that carry no length field.
_SOF_PLAIN = {0xC0, 0xC1, 0xC2}
_NO_LENGTH = {0x01, *range(0xD0, 0xD8)}


def jpeg_plain_header(data: bytes) -> tuple[int, int, int] | None:
    """(width, height, components) of a JPEG whose decoding needs nothing beyond libjpeg: 8-bit,
    1 or 3 components, no EXIF (orientation), no Adobe segment (CMYK/colour transform), no
    multi-picture index. ``None`` for anything else, which then takes the full Pillow path."""
    if not data.startswith(b"\xff\xd8"):
        return None
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _NO_LENGTH:
            pos += 2
            continue
        length = (data[pos + 2] << 8) | data[pos + 3]
        segment = data[pos + 4 : pos + 2 + length]
        if marker in _SOF_PLAIN:
            if len(segment) < 6 or segment[0] != 8:
                return None
            height = (segment[1] << 8) | segment[2]
            width = (segment[3] << 8) | segment[4]
            components = segment[5]
            return (width, height, components) if components in (1, 3) and width and height else None
        if (
            (marker == 0xE1 and segment.startswith(b"Exif"))
            or (marker == 0xE2 and segment.startswith(b"MPF"))
            or (marker == 0xEE and segment.startswith(b"Adobe"))
            or marker >= 0xC3 and marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)
            or marker == 0xDA  # scan data before any frame header: let Pillow judge it
        ):
            return None
        pos += 2 + length
    return None


def _plain_jpeg(data: bytes, cfg: PreprocessParams, suffix: str | None) -> tuple[np.ndarray, Original] | None:
    """The hot path for the most common input, a small plain JPEG, decoded with simplejpeg
    (libjpeg-turbo straight into a numpy array): about 4x faster than Pillow for a 32x32 image,
    whose cost is mostly Python-level setup. Same libjpeg settings (accurate IDCT, fancy
    upsampling), so the pixels equal Pillow's; tests hold the two together. Anything simplejpeg
    complains about (a truncated file, say) goes to the full Pillow path, which names the problem.
    Large JPEGs take the full path too, which drafts."""
    import simplejpeg

    header = jpeg_plain_header(data)
    if header is None:
        return None
    width, height, components = header
    if suffix is not None and "JPEG" not in SUFFIX_FORMATS.get(suffix.lower(), {"JPEG"}):
        raise Reject(FORMAT_MISMATCH, f"extension {suffix} but content is JPEG")
    target_h, target_w = cfg.size
    if width >= 2 * target_w and height >= 2 * target_h:
        return None
    check_pixels((width, height), cfg.max_pixels)
    mode = "L" if components == 1 else "RGB"
    try:
        array = simplejpeg.decode_jpeg(data, colorspace="GRAY" if mode == "L" else "RGB",
                                       fastdct=False, fastupsample=False, strict=True)
    except ValueError:
        return None
    if array.shape[:2] != (height, width):
        return None
    original = Original(width, height, mode, "JPEG")
    if mode == cfg.mode and (height, width) == (target_h, target_w):
        pixels = array.reshape(height, width, cfg.channels)
        pixels.setflags(write=False)
        return pixels, original
    plane = array[:, :, 0] if mode == "L" else array
    return image_to_pixels(Image.fromarray(plane), cfg), original


def to_model_pixels(
    data: bytes | bytearray | memoryview | Image.Image | np.ndarray, cfg: PreprocessParams
) -> np.ndarray:
    """The model's view of an image: read-only uint8 ``(H, W, C)``, ``(H, W) = cfg.size``, C = 1 for L.

    Encoded bytes are sniffed and size-checked before decoding; EXIF orientation is applied;
    palette, alpha (composited on ``cfg.background``), CMYK, 16-bit and grey images are converted
    to ``cfg.mode``; then the image is resized with ``cfg.resize``. Raises :class:`Reject`.
    """
    if isinstance(data, np.ndarray):
        return array_to_pixels(data, cfg)
    if not isinstance(data, Image.Image):
        # Encoded bytes: the same entry preprocess uses (with its plain-JPEG fast path).
        return decode_with_original(bytes(data), cfg)[0]
    im = data
    check_pixels(im.size, cfg.max_pixels)
    orientation = exif_orientation(im)
    _draft(im, cfg, orientation)
    _load(im)
    if orientation != 1 or "exif" in im.info:
        # PNG may carry its EXIF after the pixel data, so only now is it certainly known.
        im = ImageOps.exif_transpose(im)
    return image_to_pixels(im, cfg)


def _draft(im: Image.Image, cfg: PreprocessParams, orientation: int) -> None:
    """Let libjpeg decode a large JPEG at 1/2, 1/4 or 1/8 scale: much faster, and the scale is
    picked so the result still covers the target size, so the resize that follows loses nothing."""
    if (not cfg.fast_jpeg_decode or im.format not in ("JPEG", "MPO") or getattr(im, "tile", None) is None
            or len(im.tile) != 1):
        return
    height, width = cfg.size
    if orientation in _TRANSPOSED:
        width, height = height, width
    if im.size[0] >= 2 * width and im.size[1] >= 2 * height:
        im.draft(None, (width, height))


def _load(im: Image.Image) -> None:
    try:
        im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise Reject(TOO_LARGE, exception_text(exc)) from None
    except (OSError, EOFError, ValueError, SyntaxError, struct.error, IndexError, zlib.error) as exc:
        raise _load_error(exc, im.format or "image") from None


def image_to_pixels(im: Image.Image, cfg: PreprocessParams) -> np.ndarray:
    """Convert a decoded PIL image to ``cfg.mode`` and resize it to ``cfg.size``."""
    im = to_mode(im, cfg.mode, cfg.background)
    im = resize(im, cfg.size, cfg.resize, cfg.background)
    # frombuffer over tobytes() is a few microseconds cheaper than np.asarray(im), which matters
    # at 32x32; the result is read-only (copy it to modify in place).
    height, width = cfg.size
    return np.frombuffer(im.tobytes(), dtype=np.uint8).reshape(height, width, cfg.channels)


def grey_level(rgb: tuple[int, int, int]) -> int:
    """ITU-R 601 luma with Pillow's own integer rounding, so it matches ``convert("L")``."""
    r, g, b = rgb
    return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16


def to_mode(im: Image.Image, mode: str, background: tuple[int, int, int]) -> Image.Image:
    """Bring any Pillow mode to ``L`` or ``RGB``; transparency is composited on ``background``."""
    src = im.mode
    if src.startswith("I;16") or src in ("I", "F"):
        im = _high_depth_to_l(im)
    elif src == "1":
        im = im.convert("L")
    elif src in ("P", "PA", "LA", "La", "RGBa") or "transparency" in im.info:
        # Palette and tRNS/GIF transparency become a real alpha channel, then get composited.
        im = im.convert("RGBA") if _has_alpha(im) else im.convert("RGB")
    elif src not in ("L", "RGB", "RGBA"):
        im = im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX
    if im.mode == "RGBA":
        im = composite(im, background)
    if im.mode != mode:
        im = im.convert(mode)
    return im


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ("PA", "LA", "La", "RGBa", "RGBA") or "transparency" in im.info


def composite(im: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Alpha-blend RGBA onto an opaque background colour, in exact integer arithmetic."""
    rgba = np.asarray(im, dtype=np.uint8)
    alpha = rgba[:, :, 3:4].astype(np.uint32)
    bg = np.asarray(background, dtype=np.uint32)
    blended = (rgba[:, :, :3].astype(np.uint32) * alpha + bg * (255 - alpha) + 127) // 255
    return Image.fromarray(blended.astype(np.uint8))


def _high_depth_to_l(im: Image.Image) -> Image.Image:
    """16-bit and 32-bit grey to 8-bit by rescaling, not by clipping as ``convert("L")`` would.

    ``I;16*`` and ``I`` are taken as 0..65535 (PNG/TIFF 16-bit); ``F`` as 0..1 when it fits there,
    else as 0..255.
    """
    values = np.asarray(im)
    if im.mode == "F":
        values = values.astype(np.float64)
        finite = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        scale = 255.0 if finite.size and finite.max() <= 1.0 else 1.0
        out = np.clip(np.rint(finite * scale), 0, 255)
    else:
        wide = np.clip(values.astype(np.int64), 0, 65535)
        out = (wide * 255 + 32767) // 65535
    return Image.fromarray(out.astype(np.uint8))


def resize(im: Image.Image, size: tuple[int, int], policy: str, background: tuple[int, int, int]) -> Image.Image:
    """Resize to ``size`` = (height, width): ``stretch`` ignores the aspect ratio, ``center_crop``
    fills the target and cuts the overflow evenly, ``letterbox`` fits inside and pads with
    ``background``."""
    height, width = size
    src_w, src_h = im.size
    if (src_w, src_h) == (width, height):
        return im
    if policy == "stretch":
        return im.resize((width, height), RESAMPLE)
    if policy == "center_crop":
        scale = max(width / src_w, height / src_h)
        crop_w, crop_h = width / scale, height / scale
        left, top = (src_w - crop_w) / 2, (src_h - crop_h) / 2
        return im.resize((width, height), RESAMPLE, box=(left, top, left + crop_w, top + crop_h))
    if policy == "letterbox":
        scale = min(width / src_w, height / src_h)
        inner_w = min(width, max(1, round(src_w * scale)))
        inner_h = min(height, max(1, round(src_h * scale)))
        inner = im.resize((inner_w, inner_h), RESAMPLE)
        fill: int | tuple[int, int, int] = grey_level(background) if im.mode == "L" else tuple(background)
        canvas = Image.new(im.mode, (width, height), fill)
        canvas.paste(inner, ((width - inner_w) // 2, (height - inner_h) // 2))
        return canvas
    raise ValueError(f"unknown resize policy {policy!r}")


def array_to_pixels(array: np.ndarray, cfg: PreprocessParams) -> np.ndarray:
    """Arrays (CIFAR/IDX rows, or a caller's own): uint8 or uint16 ``(H, W)`` or ``(H, W, C)``
    with C in 1, 3, 4 (RGBA). Goes through the same PIL path as files, with a no-op fast path."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise Reject(CORRUPT, f"array of shape {array.shape} is not (H, W[, 1|3|4])")
    check_pixels((array.shape[1], array.shape[0]), cfg.max_pixels)
    channels = 1 if array.ndim == 2 else array.shape[2]
    if array.dtype == np.uint8:
        if tuple(array.shape[:2]) == tuple(cfg.size) and channels == cfg.channels:
            # Already what the PIL path would return unchanged; skip the round trip.
            return np.ascontiguousarray(array.reshape(*cfg.size, cfg.channels))
        im = Image.fromarray(np.ascontiguousarray(array))
    elif array.dtype == np.uint16 and channels == 1:
        im = Image.fromarray(np.ascontiguousarray(array))
    else:
        raise Reject(CORRUPT, f"array dtype {array.dtype} with {channels} channels is not supported")
    return image_to_pixels(im, cfg)
