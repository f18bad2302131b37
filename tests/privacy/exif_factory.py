"""Real EXIF written by Pillow (GPS, serial, artist, owner, orientation), plus an IFD1 thumbnail
appended to Pillow's TIFF block (Pillow reads IFD1 but cannot write one)."""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image


def photo(seed: int = 0, size=(48, 32)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def personal_exif(*, gps=True, serial=True, artist=True, orientation=1) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x0110] = "EOS 5D"
    if artist:
        exif[0x013B] = "Jane Doe"
        exif.get_ifd(0x8769)[0xA430] = "Jane Doe"  # CameraOwnerName
    if orientation != 1:
        exif[0x0112] = orientation
    sub = exif.get_ifd(0x8769)
    sub[0x9003] = "2024:05:01 10:00:00"
    if serial:
        sub[0xA431] = "SN-0042-XYZ"
    if gps:
        gps_ifd = exif.get_ifd(0x8825)
        gps_ifd[1], gps_ifd[2] = "N", (51.0, 30.0, 12.5)
        gps_ifd[3], gps_ifd[4] = "W", (0.0, 7.0, 40.0)
    return exif


def with_thumbnail(exif_bytes: bytes, thumb: bytes) -> bytes:
    """``Exif\\0\\0`` + TIFF with an IFD1 (JPEGInterchangeFormat) pointing at ``thumb``."""
    tiff = bytearray(exif_bytes[6:])
    big = tiff[:2] == b"MM"
    fmt = ">" if big else "<"
    ifd0 = struct.unpack(fmt + "I", tiff[4:8])[0]
    n = struct.unpack(fmt + "H", tiff[ifd0:ifd0 + 2])[0]
    next_at = ifd0 + 2 + 12 * n
    ifd1 = len(tiff) + (len(tiff) & 1)
    tiff += b"\x00" * (ifd1 - len(tiff))
    struct.pack_into(fmt + "I", tiff, next_at, ifd1)
    data_at = ifd1 + 2 + 2 * 12 + 4
    tiff += struct.pack(fmt + "H", 2)
    tiff += struct.pack(fmt + "HHII", 0x0201, 4, 1, data_at)
    tiff += struct.pack(fmt + "HHII", 0x0202, 4, 1, len(thumb))
    tiff += struct.pack(fmt + "I", 0)
    tiff += thumb
    return b"Exif\x00\x00" + bytes(tiff)


def jpeg_with_metadata(seed: int = 0, *, thumbnail=True, xmp=True, iptc=True, orientation=1, **flags) -> bytes:
    im = photo(seed)
    exif = personal_exif(orientation=orientation, **flags).tobytes()
    if thumbnail:
        small = io.BytesIO()
        photo(seed + 100, (16, 12)).save(small, "JPEG")
        exif = with_thumbnail(exif, small.getvalue())
    out = io.BytesIO()
    im.save(out, "JPEG", quality=90, exif=exif,
            xmp=(b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description><dc:creator>Jane Doe'
                 b'</dc:creator></rdf:Description></rdf:RDF></x:xmpmeta>') if xmp else None)
    data = out.getvalue()
    if iptc:  # Pillow reads IPTC but writes none: an APP13 Photoshop block with an IIM By-line
        iim = b"\x1c\x02\x50" + struct.pack(">H", 8) + b"Jane Doe"
        res = b"8BIM\x04\x04\x00\x00" + struct.pack(">I", len(iim)) + iim
        block = b"Photoshop 3.0\x00" + res
        data = data[:2] + b"\xff\xed" + struct.pack(">H", len(block) + 2) + block + data[2:]
    return data


def plain_jpeg(seed: int = 0) -> bytes:
    out = io.BytesIO()
    photo(seed).save(out, "JPEG", quality=90)
    return out.getvalue()
