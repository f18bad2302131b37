"""One test per rejection reason: each bad file is refused with a precise reason, never a crash."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from ppkit import cfg, encode, rgb, write_raw

from imgpipe.io import read_parquet
from imgpipe.preprocess import decode
from imgpipe.preprocess.pipeline import preprocess_images


def reject_of(data: bytes, suffix: str | None, **overrides) -> decode.Reject:
    with pytest.raises(decode.Reject) as info:
        decode.decode_with_original(data, cfg(**overrides), suffix)
    return info.value


def test_zero_byte_file():
    assert reject_of(b"", ".png").code == decode.EMPTY


@pytest.mark.parametrize("fmt,suffix", [("JPEG", ".jpg"), ("PNG", ".png"), ("GIF", ".gif"), ("BMP", ".bmp")])
def test_truncated_file(fmt, suffix):
    data = encode(rgb(64, 64), fmt)
    reject = reject_of(data[: len(data) // 2], suffix)
    assert reject.code == decode.TRUNCATED, reject


def test_damaged_header_of_a_known_format():
    data = encode(rgb(), "PNG")
    assert reject_of(data[:20], ".png").code in (decode.CORRUPT, decode.TRUNCATED)


def test_not_an_image():
    reject = reject_of(b"name,label\ncat.png,cat\n", ".png")
    assert reject.code == decode.NOT_AN_IMAGE


@pytest.mark.parametrize(
    "fmt,suffix",
    [("JPEG", ".png"), ("PNG", ".jpg"), ("GIF", ".webp"), ("BMP", ".tiff")],
)
def test_extension_lying_about_the_format(fmt, suffix):
    reject = reject_of(encode(rgb(), fmt), suffix)
    assert reject.code == decode.FORMAT_MISMATCH
    assert suffix in reject.detail and fmt in reject.detail


def test_unknown_extension_claims_nothing():
    out, original = decode.decode_with_original(encode(rgb(), "PNG"), cfg(), ".dat")
    assert original.format == "PNG" and out.shape == (16, 16, 3)


@pytest.mark.parametrize("fmt,suffix", [("PNG", ".png"), ("JPEG", ".jpg")])
def test_over_the_pixel_limit_is_refused_from_the_header(fmt, suffix):
    reject = reject_of(encode(rgb(64, 64), fmt), suffix, max_pixels=64 * 64 - 1)
    assert reject.code == decode.TOO_LARGE and "4096" in reject.detail


def test_pillows_own_decompression_bomb_error_becomes_a_reject(monkeypatch):
    # Pillow raises DecompressionBombError above 2 x MAX_IMAGE_PIXELS while opening; a lower
    # global limit than ours must still end as a reject.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    reject = reject_of(encode(rgb(64, 64), "PNG"), ".png")
    assert reject.code == decode.TOO_LARGE


def test_pillows_decompression_bomb_warning_as_error_becomes_a_reject(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64 - 1)
    with pytest.warns(Image.DecompressionBombWarning):
        decode.to_model_pixels(encode(rgb(64, 64), "PNG"), cfg())
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        reject = reject_of(encode(rgb(64, 64), "PNG"), ".png")
    assert reject.code == decode.TOO_LARGE


def test_every_reason_lands_in_the_rejects_table_and_the_stage_goes_on(tmp_path):
    good = encode(rgb(), "PNG")
    jpeg = encode(rgb(16, 16), "JPEG")
    raw = write_raw(
        tmp_path / "raw",
        {
            "a/good.png": good,
            "b/empty.png": b"",
            "c/cut.jpg": jpeg[: len(jpeg) // 2],
            "d/notes.bmp": b"plain text, not pixels",
            "e/liar.png": jpeg,
            "f/huge.png": encode(rgb(64, 64), "PNG"),
            "g/unreadable.png": good,
        },
    )
    (raw / "files" / "g/unreadable.png").unlink()
    (raw / "files" / "g/unreadable.png").symlink_to(raw / "files" / "missing.png")  # skipped: a link
    summary = preprocess_images(raw, tmp_path / "out", cfg(max_pixels=1000), progress=False)
    rejects = read_parquet(tmp_path / "out" / "rejects.parquet")
    assert list(rejects.columns) == ["item_id", "source_path", "reason"]
    codes = {row.item_id: row.reason.split(":")[0] for row in rejects.itertuples()}
    assert codes == {
        "b/empty.png": "empty",
        "c/cut.jpg": "truncated",
        "d/notes.bmp": "not_an_image",
        "e/liar.png": "format_mismatch",
        "f/huge.png": "too_large",
    }
    assert summary["images"] == 1 and summary["rejects"] == 5
    assert summary["rejects_by_reason"] == {
        "empty": 1, "format_mismatch": 1, "not_an_image": 1, "too_large": 1, "truncated": 1,
    }
    manifest = read_parquet(tmp_path / "out" / "manifest.parquet")
    assert manifest["item_id"].tolist() == ["a/good.png"]


def test_unexpected_decoder_failure_is_a_reject_not_a_crash(tmp_path, monkeypatch):
    raw = write_raw(tmp_path / "raw", {"x.png": encode(rgb(), "PNG"), "y.png": encode(rgb(seed=1), "PNG")})
    real = decode.decode_with_original

    def flaky(data, c, suffix=None):
        if data == encode(rgb(seed=1), "PNG"):
            raise RuntimeError("boom")
        return real(data, c, suffix)

    monkeypatch.setattr(decode, "decode_with_original", flaky)
    summary = preprocess_images(raw, tmp_path / "out", cfg(), progress=False)
    rejects = read_parquet(tmp_path / "out" / "rejects.parquet")
    assert summary["images"] == 1
    assert rejects["reason"].tolist() == ["corrupt: unexpected RuntimeError while decoding (boom)"]
    assert np.load(tmp_path / "out" / "shards" / "shard-00000.npy").shape == (1, 16, 16, 3)
