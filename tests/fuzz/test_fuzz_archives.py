"""Fuzzing archive extraction: hostile member names (``..``, absolute, drive letters, NUL,
backslashes), links, devices, FIFOs, duplicates, lying size fields and garbage bytes, for tar
(plain and gzip) and zip, into a folder and into the packing sink.

Property: the extracted files, or one SourceError line naming the source; never another
exception, never a link or special file in the output, never a write outside it; and the folder
and the sink (the two places extraction writes to) accept and refuse the same archives."""

from __future__ import annotations

import io
import tarfile
import warnings
import zipfile

from fuzzing import outcome, scratch, tree
from hypothesis import given, reject
from hypothesis import strategies as st

from imgpipe.download.extract import Budget, MemberSink, extract_archive

SOURCE = "https://example.org/data/archive-under-test"
PART = st.sampled_from(["a", "b.png", "c.txt", "d", "..", ".", "", "C:", "é.png", " ", "x\\..", "\x00", "labels.csv"])
NAME = st.builds(lambda lead, parts, sep: lead + sep.join(parts), st.sampled_from(["", "", "", "/", "./", "\\"]),
                 st.lists(PART, min_size=1, max_size=4), st.sampled_from(["/", "/", "\\"]))
KIND = st.sampled_from(["file", "file", "file", "dir", "symlink", "hardlink", "fifo", "chr", "blk", "odd"])
MEMBER = st.tuples(NAME, KIND, NAME, st.binary(max_size=48))
# Overwrite a few bytes anywhere (headers included), then maybe cut the archive short.
GARBAGE = st.tuples(st.lists(st.tuples(st.integers(0, 2048), st.integers(0, 255)), max_size=3),
                    st.one_of(st.none(), st.integers(0, 2048)))

_TAR_TYPES = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
              "fifo": tarfile.FIFOTYPE, "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE, "odd": b"Z"}
_ZIP_MODES = {"file": 0o100644, "dir": 0o040755, "symlink": 0o120777, "fifo": 0o010644, "chr": 0o020644,
              "blk": 0o060644, "odd": 0o140644, "hardlink": 0o100644}


def tar_archive(members, gz: bool, huge: int | None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, link, body in members:
            info = tarfile.TarInfo(name)
            info.mtime = 0
            if kind == "file":
                info.size = len(body)
                tf.addfile(info, io.BytesIO(body))
            else:
                info.type, info.linkname = _TAR_TYPES[kind], link
                tf.addfile(info)
    data = bytearray(buf.getvalue())
    if huge is not None and not gz and len(data) >= 512:
        # The first header declares `huge` bytes of content the archive does not have.
        data[124:136] = f"{huge:011o}".encode()[-11:] + b"\x00"
        data[148:156] = b" " * 8
        data[148:156] = f"{sum(data[:512]):06o}\x00 ".encode()
    return bytes(data)


def zip_archive(members, declared: int | None) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name": exactly what is being tried
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, kind, link, body in members:
                info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
                info.create_system = 3
                info.external_attr = _ZIP_MODES[kind] << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, link.encode("utf-8", "surrogatepass") if kind == "symlink" else body)
    data = bytearray(buf.getvalue())
    central = data.rfind(b"PK\x01\x02")
    if declared is not None and central >= 0:
        data[central + 24:central + 28] = declared.to_bytes(4, "little")  # the uncompressed size it claims
    return bytes(data)


def mangle(data: bytes, garbage) -> bytes:
    writes, cut = garbage
    out = bytearray(data)
    for pos, value in writes:
        if pos < len(out):
            out[pos] = value
    return bytes(out[:cut] if cut is not None else out)


def extracted_from_folder(out) -> dict[str, bytes]:
    kinds = tree(out)
    assert set(kinds.values()) <= {"file", "dir"}, kinds  # no link, FIFO or device is ever made
    return {rel: (out / rel).read_bytes() for rel, kind in kinds.items() if kind == "file"}


def extracted_from_sink(sink: MemberSink) -> dict[str, bytes]:
    files = {}
    for parts in sink.files:
        with sink.open(parts) as fh:
            files["/".join(parts)] = fh.read()
    return files


def check_extraction(data: bytes) -> None:
    with scratch() as tmp:
        archive = tmp / "archive.bin"
        archive.write_bytes(data)
        box = tmp / "up" / "up" / "box"  # three '..' from box/out still land inside tmp
        folder, loose = box / "out", box / "loose"
        loose.mkdir(parents=True)
        before = tree(tmp)

        _, folder_error = outcome(lambda: extract_archive(archive, folder, Budget(SOURCE, 1 << 16, 40)), SOURCE)
        sink = MemberSink(box / "spill", loose, lambda parts: not parts[-1].endswith(".png"))
        try:
            _, sink_error = outcome(lambda: extract_archive(archive, sink, Budget(SOURCE, 1 << 16, 40)), SOURCE)
            sink_files = None if sink_error else extracted_from_sink(sink)
        finally:
            sink.close()

        # Nothing was written outside the box: every entry outside it is as it was.
        outside = {k: v for k, v in tree(tmp).items() if not k.startswith("up/up/box/")}
        assert outside == {k: v for k, v in before.items() if not k.startswith("up/up/box/")}
        assert all(k in ("out", "loose", "spill") or k.startswith(("out/", "loose/")) for k in tree(box))
        assert (folder_error is None) == (sink_error is None), (folder_error, sink_error)
        if folder_error is None:
            assert extracted_from_folder(folder) == sink_files


@given(st.lists(MEMBER, min_size=1, max_size=5), st.booleans(), st.one_of(st.none(), st.integers(0, 2**33)),
       GARBAGE)
def test_tar(members, gz, huge, garbage):
    try:
        data = tar_archive(members, gz, huge)
    except (ValueError, UnicodeError, tarfile.TarError):
        reject()  # a name tarfile itself cannot write
    check_extraction(mangle(data, garbage))


@given(st.lists(MEMBER, min_size=1, max_size=5), st.one_of(st.none(), st.integers(0, 2**32 - 1)), GARBAGE)
def test_zip(members, declared, garbage):
    try:
        data = zip_archive(members, declared)
    except (ValueError, UnicodeError):
        reject()
    check_extraction(mangle(data, garbage))


@given(st.binary(max_size=600), st.sampled_from([b"", b"PK\x03\x04", b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00"]))
def test_garbage_with_an_archive_signature(data, magic):
    check_extraction(magic + data)
