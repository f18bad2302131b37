"""Personal metadata in original image files: scan it, and strip it without touching the pixels.

The scan flags, per file: ``gps`` (an EXIF GPS block with content), ``camera_serial`` (body or
lens serial number), ``owner`` (artist, camera owner, copyright, XP author, PNG Author/Copyright),
``thumbnail`` (an embedded preview image: it may show what was cropped or edited out), ``xmp`` and
``iptc`` (blocks that name creators, contacts and places). ``personal`` is any of them.

Stripping works on the container, not the pixels: JPEG keeps its entropy-coded data, JFIF, ICC
and Adobe segments byte for byte and loses APP1 (EXIF, XMP), APP3-APP13, APP15 and comments; PNG
loses eXIf and its text and time chunks. The EXIF orientation survives as the only tag of a new,
minimal EXIF block, so the image still displays upright. Other formats (TIFF, WebP, ...) that
carry metadata are re-saved by Pillow, losslessly, with the orientation applied.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import asdict, dataclass

from PIL import Image, ImageOps

FLAGS = ("gps", "camera_serial", "owner", "thumbnail", "xmp", "iptc")
ORIENTATION = 0x0112
GPS_IFD = 0x8825
EXIF_IFD = 0x8769
SERIAL_TAGS = (0xA431, 0xA435)  # BodySerialNumber, LensSerialNumber
OWNER_TAGS_IFD0 = (0x013B, 0x8298, 0x9C9D)  # Artist, Copyright, XPAuthor
OWNER_TAGS_EXIF = (0xA430,)  # CameraOwnerName
XMP_PERSONAL = (b"dc:creator", b"photoshop:Author", b"Iptc4xmpCore:CreatorContactInfo", b"exif:GPS",
                b"aux:SerialNumber", b"exifEX:BodySerialNumber", b"xmpRights:Owner", b"photoshop:Credit")
PNG_OWNER_KEYS = {b"Author", b"Artist", b"Copyright", b"Source"}
PNG_DROP = {b"eXIf", b"tEXt", b"zTXt", b"iTXt", b"tIME"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
XMP_JPEG = b"http://ns.adobe.com/xap/1.0/\x00"


@dataclass
class Findings:
    gps: bool = False
    camera_serial: bool = False
    owner: bool = False
    thumbnail: bool = False
    xmp: bool = False
    iptc: bool = False
    other: bool = False  # metadata that names no one (make, model, dates, comments)
    orientation: int = 1

    @property
    def personal(self) -> bool:
        return any(getattr(self, flag) for flag in FLAGS)

    @property
    def any(self) -> bool:
        return self.personal or self.other

    def as_row(self) -> dict:
        return {**asdict(self), "personal": self.personal}


def _read_exif(payload: bytes, found: Findings) -> None:
    """Flags from an EXIF block (``Exif\\0\\0`` + TIFF, or bare TIFF as PNG's eXIf holds)."""
    exif = Image.Exif()
    try:
        exif.load(payload if payload.startswith(b"Exif") else b"Exif\x00\x00" + payload)
        gps = exif.get_ifd(GPS_IFD)
        sub = exif.get_ifd(EXIF_IFD)
        ifd1 = exif.get_ifd(-1)  # ExifTags.IFD.IFD1: the thumbnail's directory
    except Exception:  # a damaged block is still metadata; it goes when stripped
        found.other = True
        return
    found.gps |= bool(gps)
    found.camera_serial |= any(str(sub.get(t, "")).strip() for t in SERIAL_TAGS)
    found.owner |= any(str(exif.get(t, "")).strip(" \x00") for t in OWNER_TAGS_IFD0)
    found.owner |= any(str(sub.get(t, "")).strip() for t in OWNER_TAGS_EXIF)
    found.thumbnail |= 0x0201 in ifd1 or b"\xff\xd8\xff" in payload[8:]
    orientation = exif.get(ORIENTATION)
    if isinstance(orientation, int) and 1 <= orientation <= 8:
        found.orientation = orientation
    found.other = True


def _xmp(payload: bytes, found: Findings) -> None:
    found.xmp |= any(key in payload for key in XMP_PERSONAL)
    found.other = True


def _orientation_exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    return exif.tobytes()  # b"Exif\0\0" + TIFF


# ---------------------------------------------------------------------------------------------- JPEG


def _jpeg_segments(data: bytes) -> tuple[list[tuple[int, int, int]], int]:
    """(marker, start, end) of each header segment, and where the scan data starts."""
    segments, i, n = [], 2, len(data)
    while i + 4 <= n and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:
            i += 2
            continue
        if marker in (0xDA, 0xD9):
            break
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        segments.append((marker, i, i + 2 + length))
        i += 2 + length
    return segments, i


def _jpeg_drops(marker: int, payload: bytes) -> bool:
    if marker == 0xE2:
        return not payload.startswith(b"ICC_PROFILE")
    return marker == 0xE1 or 0xE3 <= marker <= 0xED or marker in (0xEF, 0xFE)


def _scan_jpeg(data: bytes) -> Findings:
    found = Findings()
    segments, _ = _jpeg_segments(data)
    for marker, start, end in segments:
        payload = data[start + 4:end]
        if marker == 0xE1 and payload.startswith(b"Exif"):
            _read_exif(payload, found)
        elif marker == 0xE1 and payload.startswith(XMP_JPEG):
            _xmp(payload, found)
        elif marker == 0xED:
            found.iptc |= b"8BIM\x04\x04" in payload  # the IIM (IPTC) resource
            found.other = True
        elif _jpeg_drops(marker, payload):
            found.other = True
    return found


def _strip_jpeg(data: bytes, found: Findings) -> bytes:
    segments, scan = _jpeg_segments(data)
    out = [data[:2]]
    kept_orientation = found.orientation == 1
    for marker, start, end in segments:
        if _jpeg_drops(marker, data[start + 4:end]):
            continue
        if not kept_orientation and marker not in (0xE0,):  # right after JFIF, as cameras put EXIF
            block = _orientation_exif(found.orientation)
            out.append(b"\xff\xe1" + struct.pack(">H", len(block) + 2) + block)
            kept_orientation = True
        out.append(data[start:end])
    out.append(data[scan:])
    return b"".join(out)


# ----------------------------------------------------------------------------------------------- PNG


def _png_chunks(data: bytes):
    i = len(PNG_SIGNATURE)
    while i + 8 <= len(data):
        length = struct.unpack(">I", data[i:i + 4])[0]
        kind = data[i + 4:i + 8]
        end = i + 12 + length
        yield kind, i, end, data[i + 8:i + 8 + length]
        i = end
        if kind == b"IEND":
            return


def _scan_png(data: bytes) -> Findings:
    found = Findings()
    for kind, _start, _end, body in _png_chunks(data):
        if kind == b"eXIf":
            _read_exif(body, found)
        elif kind in (b"tEXt", b"zTXt", b"iTXt"):
            key = body.split(b"\x00", 1)[0]
            if key == b"XML:com.adobe.xmp":
                _xmp(body, found)
            elif key in PNG_OWNER_KEYS:
                found.owner = True
            elif key.startswith(b"Raw profile type"):  # ImageMagick's hex-encoded EXIF/IPTC
                found.iptc |= b"iptc" in key.lower()
                found.other = True
            else:
                found.other = True
        elif kind == b"tIME":
            found.other = True
    return found


def _strip_png(data: bytes, found: Findings) -> bytes:
    out = [PNG_SIGNATURE]
    for kind, start, end, _body in _png_chunks(data):
        if kind in PNG_DROP:
            continue
        if kind == b"IDAT" and found.orientation != 1:
            body = _orientation_exif(found.orientation)[6:]
            out.append(struct.pack(">I", len(body)) + b"eXIf" + body
                       + struct.pack(">I", zlib.crc32(b"eXIf" + body)))
            found = Findings()  # written once
        out.append(data[start:end])
    return b"".join(out)


# --------------------------------------------------------------------------------- everything else


def _scan_other(data: bytes) -> Findings:
    found = Findings()
    try:
        with Image.open(io.BytesIO(data)) as im:
            exif = im.getexif()
            if exif:
                _read_exif(exif.tobytes(), found)
            xmp = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")
            if xmp:
                _xmp(xmp if isinstance(xmp, bytes) else str(xmp).encode(), found)
            if im.info.get("comment"):
                found.other = True
    except Exception:
        pass  # not an image Pillow reads: preprocess rejects it with its reason
    return found


def _strip_other(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as im:
        fmt = im.format
        upright = ImageOps.exif_transpose(im)
        keep = {"icc_profile": im.info["icc_profile"]} if im.info.get("icc_profile") else {}
        if fmt == "WEBP":
            keep["lossless"] = True
        if fmt == "TIFF":
            keep["compression"] = "tiff_adobe_deflate"
        if fmt == "GIF" and getattr(im, "n_frames", 1) > 1:
            return data  # animations keep their frames; GIF carries no EXIF block of its own
        buffer = io.BytesIO()
        upright.save(buffer, format=fmt, **keep)
        return buffer.getvalue()


# ------------------------------------------------------------------------------------------ the API


def scan(data: bytes) -> Findings:
    """What personal metadata the file's bytes carry."""
    if data[:3] == b"\xff\xd8\xff":
        return _scan_jpeg(data)
    if data.startswith(PNG_SIGNATURE):
        return _scan_png(data)
    return _scan_other(data)


def strip(data: bytes, found: Findings | None = None) -> bytes:
    """The same image without metadata (pixels untouched for JPEG and PNG); ``data`` itself when
    there is nothing to strip."""
    found = scan(data) if found is None else found
    if not found.any:
        return data
    if data[:3] == b"\xff\xd8\xff":
        return _strip_jpeg(data, found)
    if data.startswith(PNG_SIGNATURE):
        return _strip_png(data, found)
    try:
        return _strip_other(data)
    except Exception:
        return data  # undecodable: preprocess rejects it; nothing readable to strip
