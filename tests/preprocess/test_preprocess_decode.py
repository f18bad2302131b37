"""One test per odd image type, the resize policies, and the shared to_model_pixels path."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from ppkit import cfg, encode, jpeg_with_orientation, noise, rgb, solid

from imgpipe.preprocess import decode


def pixels_of(data: bytes, suffix: str | None = None, **overrides) -> tuple[np.ndarray, decode.Original]:
    return decode.decode_with_original(data, cfg(**overrides), suffix)


def test_png_rgb_is_lossless_and_shaped_hwc():
    source = noise(16, 16)
    out, original = pixels_of(encode(Image.fromarray(source), "PNG"), ".png")
    assert out.dtype == np.uint8 and out.shape == (16, 16, 3)
    np.testing.assert_array_equal(out, source)
    assert original == decode.Original(16, 16, "RGB", "PNG")


@pytest.mark.parametrize(
    ("fmt", "suffix", "kwargs"),
    [("BMP", ".bmp", {}), ("TIFF", ".tiff", {}), ("WEBP", ".webp", {"lossless": True}), ("PPM", ".ppm", {})],
)
def test_lossless_formats_decode_exactly(fmt, suffix, kwargs):
    source = noise(16, 16, seed=3)
    out, original = pixels_of(encode(Image.fromarray(source), fmt, **kwargs), suffix)
    np.testing.assert_array_equal(out, source)
    assert original.format == fmt


def test_gif_takes_the_first_frame():
    frames = [solid((255, 0, 0)), solid((0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    out, original = pixels_of(data, ".gif")
    assert original.format == "GIF" and original.mode == "P"
    assert (out == np.array([255, 0, 0], np.uint8)).all()


def test_palette_png_converts_to_its_colours():
    im = Image.new("P", (16, 16), 1)
    im.putpalette([0, 0, 0, 10, 200, 30] + [0] * (254 * 3))
    out, original = pixels_of(encode(im, "PNG"), ".png")
    assert original.mode == "P"
    assert (out == np.array([10, 200, 30], np.uint8)).all()


def test_palette_transparency_shows_the_background():
    im = Image.new("P", (16, 16), 0)
    im.putpalette([10, 20, 30] * 256)
    data = encode(im, "PNG", transparency=0)
    out, _ = pixels_of(data, ".png", background=(1, 2, 3))
    assert (out == np.array([1, 2, 3], np.uint8)).all()


def test_alpha_is_composited_on_the_configured_background():
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0] = 200  # red at half opacity on the left, fully transparent on the right
    rgba[:, :8, 3] = 128
    data = encode(Image.fromarray(rgba), "PNG")
    out, original = pixels_of(data, ".png", background=(0, 0, 255))
    assert original.mode == "RGBA"
    # 200*128/255 = 100.4 -> 100 red; blue 255*127/255 = 127
    np.testing.assert_array_equal(out[0, 0], [100, 0, 127])
    np.testing.assert_array_equal(out[0, 15], [0, 0, 255])


def test_grey_alpha_to_l_uses_the_background_grey():
    la = np.zeros((16, 16, 2), np.uint8)  # black, fully transparent
    data = encode(Image.fromarray(la, mode="LA"), "PNG")
    out, original = pixels_of(data, ".png", mode="L", background=(255, 255, 255))
    assert original.mode == "LA" and out.shape == (16, 16, 1)
    assert (out == 255).all()


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in print terms
    out, original = pixels_of(encode(cmyk, "JPEG", quality=95), ".jpg")
    assert original.mode == "CMYK" and original.format == "JPEG"
    r, g, b = out.reshape(-1, 3).mean(axis=0)
    assert r > 240 and g < 15 and b < 15


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_grey_is_rescaled_not_clipped(fmt):
    values = np.array([[0, 32896, 65535, 1000]], np.uint16).repeat(4, axis=0)
    data = encode(Image.fromarray(values), fmt)
    out, original = pixels_of(data, None, mode="L", size=(4, 4))
    assert original.mode.startswith("I;16")
    np.testing.assert_array_equal(out[0, :, 0], [0, 128, 255, 4])


def test_grey_becomes_rgb_and_rgb_becomes_l_like_pillow():
    grey = noise(16, 16, channels=1)
    out, _ = pixels_of(encode(Image.fromarray(grey), "PNG"), ".png", mode="RGB")
    np.testing.assert_array_equal(out, np.repeat(grey[:, :, None], 3, axis=2))
    colour = rgb()
    out, _ = pixels_of(encode(colour, "PNG"), ".png", mode="L")
    np.testing.assert_array_equal(out[:, :, 0], np.asarray(colour.convert("L")))


def test_bilevel_image_becomes_black_and_white():
    im = Image.new("1", (16, 16), 1)
    out, original = pixels_of(encode(im, "PNG"), ".png", mode="L")
    assert original.mode == "1" and (out == 255).all()


def test_exif_orientation_is_applied():
    # Stored 32 wide x 16 high: left half red, right half blue. Orientation 6 = display rotated
    # 90 degrees clockwise, so the viewer sees 16 wide x 32 high with red on top.
    stored = np.zeros((16, 32, 3), np.uint8)
    stored[:, :16, 0] = 255
    stored[:, 16:, 2] = 255
    data = jpeg_with_orientation(Image.fromarray(stored), 6)
    out, original = pixels_of(data, ".jpg", size=(32, 16))
    assert (original.width, original.height) == (16, 32)
    assert out[4, 8, 0] > 200 and out[4, 8, 2] < 60  # top is red
    assert out[28, 8, 2] > 200 and out[28, 8, 0] < 60  # bottom is blue


def _bands(width: int = 32, height: int = 16) -> Image.Image:
    """Left quarter red, middle half green, right quarter blue."""
    a = np.zeros((height, width, 3), np.uint8)
    a[:, : width // 4, 0] = 255
    a[:, width // 4 : 3 * width // 4, 1] = 255
    a[:, 3 * width // 4 :, 2] = 255
    return Image.fromarray(a)


def test_resize_stretch_keeps_everything():
    out, _ = pixels_of(encode(_bands(), "PNG"), ".png", size=(16, 16), resize="stretch")
    assert out.shape == (16, 16, 3)
    assert out[8, 0, 0] == 255 and out[8, 8, 1] == 255 and out[8, 15, 2] == 255


def test_resize_center_crop_cuts_the_sides():
    out, _ = pixels_of(encode(_bands(), "PNG"), ".png", size=(16, 16), resize="center_crop")
    assert (out == np.array([0, 255, 0], np.uint8)).all()


def test_resize_letterbox_pads_with_the_background():
    out, _ = pixels_of(encode(_bands(), "PNG"), ".png", size=(16, 16), resize="letterbox", background=(9, 9, 9))
    assert (out[:4] == 9).all() and (out[12:] == 9).all()  # 32x16 fits as 16x8, centred
    assert out[8, 0, 0] == 255 and out[8, 8, 1] == 255 and out[8, 15, 2] == 255


def test_letterbox_in_l_mode_pads_with_the_background_luma():
    out, _ = pixels_of(encode(_bands(), "PNG"), ".png", size=(16, 16), mode="L", resize="letterbox",
                       background=(255, 0, 0))
    assert (out[0] == decode.grey_level((255, 0, 0))).all()


@pytest.mark.parametrize(
    "make",
    [
        lambda: encode(rgb(13, 17), "JPEG", quality=90),
        lambda: encode(rgb(16, 16), "JPEG", quality=75, progressive=True),
        lambda: encode(rgb(16, 16), "JPEG", quality=80, subsampling=0),
        lambda: encode(Image.fromarray(noise(16, 16, 1)), "JPEG"),
    ],
    ids=["odd-size", "progressive", "444", "grey"],
)
def test_plain_jpeg_fast_path_matches_pillows_full_path(make):
    data = make()
    assert decode.jpeg_plain_header(data) is not None
    for mode in ("RGB", "L"):
        c = cfg(mode=mode)
        fast, original = decode.decode_with_original(data, c, ".jpg")
        im = Image.open(io.BytesIO(data))
        assert original == decode.Original(im.width, im.height, im.mode, im.format)
        np.testing.assert_array_equal(fast, decode.to_model_pixels(im, c))


def test_large_jpeg_is_drafted_but_reports_its_real_size():
    big = Image.fromarray(np.kron(noise(8, 8), np.ones((32, 32, 1), np.uint8)))  # 256x256 blocks
    data = encode(big, "JPEG", quality=95)
    out, original = pixels_of(data, ".jpg", size=(16, 16))
    assert (original.width, original.height) == (256, 256)
    reference = np.asarray(big.resize((16, 16), Image.Resampling.BILINEAR), dtype=np.int16)
    assert np.abs(out.astype(np.int16) - reference).mean() < 12


def test_fast_jpeg_decode_false_decodes_every_pixel_before_the_resize():
    big = Image.fromarray(np.kron(noise(12, 12, seed=3), np.ones((16, 16, 1), np.uint8)))  # 192x192
    data = encode(big, "JPEG", quality=95)
    drafted = decode.to_model_pixels(data, cfg(size=(24, 24)))
    full = decode.to_model_pixels(data, cfg(size=(24, 24), fast_jpeg_decode=False))
    # The full path is the plain PIL one; the draft differs a little, and each is deterministic.
    reference = Image.open(io.BytesIO(data)).convert("RGB").resize((24, 24), Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(full, np.asarray(reference))
    assert not np.array_equal(drafted, full)
    assert np.abs(drafted.astype(np.int16) - full).mean() < 32  # hard-edged blocks: the worst case
    np.testing.assert_array_equal(drafted, decode.to_model_pixels(data, cfg(size=(24, 24))))


def test_to_model_pixels_is_one_path_for_bytes_images_and_arrays():
    source = noise(20, 12)
    c = cfg(size=(16, 16))
    data = encode(Image.fromarray(source), "PNG")
    from_bytes = decode.to_model_pixels(data, c)
    np.testing.assert_array_equal(from_bytes, decode.to_model_pixels(Image.open(io.BytesIO(data)), c))
    np.testing.assert_array_equal(from_bytes, decode.to_model_pixels(source, c))
    grey = decode.to_model_pixels(noise(28, 28, 1), cfg(mode="RGB"))
    assert grey.shape == (16, 16, 3) and (grey[..., 0] == grey[..., 2]).all()


def test_to_model_pixels_rejects_bad_bytes_with_a_code():
    with pytest.raises(decode.Reject) as info:
        decode.to_model_pixels(b"hello", cfg())
    assert info.value.code == decode.NOT_AN_IMAGE
