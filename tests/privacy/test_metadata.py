"""Metadata scan and strip on real EXIF written by Pillow, and the download stage's take-downs:
an excluded image is never packed, and the packed originals carry no personal metadata."""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zlib

import numpy as np
import pandas as pd
import pytest
from exif_factory import jpeg_with_metadata, personal_exif, photo, plain_jpeg
from PIL import Image

from imgpipe.download.acquire import acquire
from imgpipe.errors import PipelineError
from imgpipe.params.download import DownloadParams
from imgpipe.params.privacy import PrivacyParams
from imgpipe.privacy.metadata import scan, strip
from imgpipe.privacy.raw import METADATA_TABLE, read_exclusions
from imgpipe.rawdata import list_items, read_item_bytes

PERSONAL = [b"Jane Doe", b"SN-0042-XYZ", b"dc:creator"]


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.mark.parametrize("flag,kwargs", [
    ("gps", {"gps": True}), ("camera_serial", {"serial": True}), ("owner", {"artist": True}),
    ("thumbnail", {"thumbnail": True}), ("xmp", {"xmp": True}), ("iptc", {"iptc": True}),
])
def test_each_scan_field_alone(flag, kwargs):
    off = {"gps": False, "serial": False, "artist": False, "thumbnail": False, "xmp": False, "iptc": False}
    found = scan(jpeg_with_metadata(**{**off, **kwargs}))
    flags = {f: getattr(found, f) for f in ("gps", "camera_serial", "owner", "thumbnail", "xmp", "iptc")}
    assert flags == {f: f == flag for f in flags}
    assert found.personal
    clean = scan(jpeg_with_metadata(**off))
    assert not clean.personal and clean.other  # make, model and a date name no one
    assert not scan(plain_jpeg()).any


def test_jpeg_strip_keeps_pixels_and_only_the_orientation():
    data = jpeg_with_metadata(orientation=6)
    clean = strip(data)
    assert all(s in data for s in PERSONAL) and not any(s in clean for s in PERSONAL)
    assert np.array_equal(_pixels(clean), _pixels(data))  # the entropy-coded data is untouched
    assert dict(Image.open(io.BytesIO(clean)).getexif()) == {0x0112: 6}
    found = scan(clean)
    assert not found.personal and found.orientation == 6
    assert strip(clean) == clean  # stable: a second strip changes nothing
    upright = strip(jpeg_with_metadata(seed=1))
    assert Image.open(io.BytesIO(upright)).getexif() == {} and b"Exif" not in upright


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_png_exif_text_and_xmp():
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Author", "Jane Doe")
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta><dc:creator>Jane Doe</dc:creator></x:xmpmeta>")
    out = io.BytesIO()
    photo().save(out, "PNG", pnginfo=info, exif=personal_exif(orientation=3).tobytes())
    data = out.getvalue()
    found = scan(data)
    assert found.gps and found.camera_serial and found.owner and found.xmp and found.orientation == 3
    clean = strip(data, found)
    assert b"Jane Doe" not in clean and b"SN-0042" not in clean
    assert np.array_equal(_pixels(clean), _pixels(data))
    assert dict(Image.open(io.BytesIO(clean)).getexif()) == {0x0112: 3}


def test_other_formats_are_resaved_upright_without_metadata():
    out = io.BytesIO()
    photo().save(out, "WEBP", lossless=True, exif=personal_exif(orientation=6).tobytes())
    data = out.getvalue()
    assert scan(data).gps
    clean = strip(data)
    assert b"Jane Doe" not in clean and not scan(clean).any
    # the orientation was applied: a 48x32 image turned by 90 degrees
    assert Image.open(io.BytesIO(clean)).size == (32, 48)


def _folder(tmp_path):
    src = tmp_path / "src"
    (src / "cat").mkdir(parents=True)
    (src / "dog").mkdir()
    images = {
        "cat/gps.jpg": jpeg_with_metadata(0),
        "cat/plain.jpg": plain_jpeg(1),
        "dog/taken_down.jpg": plain_jpeg(2),
        "dog/by_hash.jpg": plain_jpeg(3),
        "dog/by_path.jpg": plain_jpeg(4),
    }
    for rel, data in images.items():
        (src / rel).write_bytes(data)
    return src, images


def test_download_excludes_and_strips_before_packing(tmp_path):
    src, images = _folder(tmp_path)
    exclude = tmp_path / "exclude.csv"
    exclude.write_text(
        "item_id,path,sha256,reason\n"
        "dog/taken_down.jpg,,,subject asked\n"
        f",,{hashlib.sha256(images['dog/by_hash.jpg']).hexdigest()},subject asked\n"
        ",/home/me/photos/dog/by_path.jpg,,licence withdrawn\n"
    )
    raw = tmp_path / "raw"
    acquire(DownloadParams(source=str(src)), raw, privacy=PrivacyParams(exclude_file=str(exclude)))
    assert sorted(i.item_id for i in list_items(raw)) == ["cat/gps.jpg", "cat/plain.jpg"]
    every_byte = b"".join(p.read_bytes() for p in raw.rglob("*") if p.is_file())
    for rel in ("dog/taken_down.jpg", "dog/by_hash.jpg", "dog/by_path.jpg"):
        assert images[rel] not in every_byte
    assert not any(s in every_byte for s in PERSONAL)
    gps_item = next(i for i in list_items(raw) if i.item_id == "cat/gps.jpg")
    assert np.array_equal(_pixels(read_item_bytes(raw, gps_item)), _pixels(images["cat/gps.jpg"]))

    counts = json.loads((raw / "source.json").read_text())["extra"]["privacy"]
    assert counts["images_scanned"] == 2 and counts["gps_images"] == 1
    assert counts["personal_metadata_images"] == 1 and counts["thumbnail_images"] == 1
    assert counts["metadata_stripped"] == 1
    assert counts["excluded"] == 3 and counts["excluded_by_reason"] == {"licence withdrawn": 1, "subject asked": 2}
    table = pd.read_parquet(raw / METADATA_TABLE).set_index("item_id")
    # The record keeps the sha256 of what was fetched, before stripping.
    assert table.loc["cat/gps.jpg", "sha256_fetched"] == hashlib.sha256(images["cat/gps.jpg"]).hexdigest()
    assert bool(table.loc["cat/gps.jpg", "stripped"]) and not bool(table.loc["cat/plain.jpg", "stripped"])

    kept = acquire(DownloadParams(source=str(src)), tmp_path / "raw2",
                   privacy=PrivacyParams(strip_metadata=False, exclude_file=str(tmp_path / "none.csv")))
    assert kept.extra["privacy"]["excluded"] == 0 and kept.extra["privacy"]["metadata_stripped"] == 0
    assert images["cat/gps.jpg"] in b"".join(p.read_bytes() for p in (tmp_path / "raw2").rglob("*.tar"))


@pytest.mark.parametrize("text,problem", [
    ("item_id,why\na.png,x\n", "columns must be"),
    ("item_id,reason\n,no id\n", "line 2: no item_id"),
    ("item_id,reason\na.png,\n", "line 2: no reason"),
    ("sha256,reason\nabc,x\n", "line 2: sha256 'abc' is not 64 hex digits"),
])
def test_malformed_exclusion_file_is_one_line(tmp_path, text, problem):
    path = tmp_path / "exclude.csv"
    path.write_text(text)
    with pytest.raises(PipelineError) as err:
        read_exclusions(path)
    assert str(err.value).startswith(f"{path}: ") and problem in str(err.value)
