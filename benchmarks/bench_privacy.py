"""Privacy figures: metadata scan and strip (images/s), and face detectors (recall, false
positives, images/s).

    nice python benchmarks/bench_privacy.py metadata [--limit N]
    nice python benchmarks/bench_privacy.py faces [--limit N]

metadata: on the 50,000 shared CIFAR-10 JPEGs (../shared/data/cifar10-train.tar.gz; they carry
no EXIF) and on generated JPEGs with full personal EXIF (GPS, serial, artist, thumbnail, XMP,
IPTC), against a Pillow baseline in the same run (scan: ``Image.open().getexif()``; strip: a
Pillow re-save without metadata, which also re-encodes the pixels).
faces: on ../shared/data/faces-dev.tar.gz (300 photographs of people: every image holds a face,
so recall = share of images with a detection) and on the 200 raccoon photographs of
../shared/data/raccoon-voc.tar.gz (no people: false positives = images with a detection); see
docs/privacy.md.
"""

from __future__ import annotations

import argparse
import io
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "privacy"))

# ../shared/data beside the project (docs/benchmarks.md); a worktree sits one level deeper.
SHARED = next((p / "shared" / "data" for p in Path(__file__).resolve().parents[1:4]
               if (p / "shared" / "data").exists()), Path("../shared/data"))


def _members(archive: Path, limit: int | None, suffixes=(".jpg", ".jpeg", ".png")) -> list[tuple[str, bytes]]:
    out = []
    with tarfile.open(archive) as tar:
        for member in tar:
            if member.isfile() and member.name.lower().endswith(suffixes):
                out.append((member.name, tar.extractfile(member).read()))
                if limit and len(out) >= limit:
                    break
    return out


def _rate(fn, items) -> tuple[float, float]:
    start = time.perf_counter()
    for data in items:
        fn(data)
    seconds = time.perf_counter() - start
    return seconds, len(items) / seconds


def bench_metadata(limit: int | None) -> None:
    from exif_factory import jpeg_with_metadata
    from PIL import Image

    from imgpipe.privacy.metadata import scan, strip

    def pillow_scan(data: bytes) -> None:
        with Image.open(io.BytesIO(data)) as im:
            exif = im.getexif()
            exif.get_ifd(0x8825)

    def pillow_strip(data: bytes) -> bytes:
        with Image.open(io.BytesIO(data)) as im:
            out = io.BytesIO()
            im.save(out, im.format)
            return out.getvalue()

    sets = []
    archive = SHARED / "cifar10-train.tar.gz"
    if archive.exists():
        sets.append(("CIFAR-10 JPEGs (no EXIF)", [d for _n, d in _members(archive, limit)]))
    sets.append(("generated JPEGs with personal EXIF/XMP/IPTC", [jpeg_with_metadata(i) for i in range(min(limit or 2000, 2000))]))
    for name, items in sets:
        found = sum(scan(d).personal for d in items)
        print(f"{name}: {len(items)} images, {found} with personal metadata")
        for label, ours, base in (("scan", scan, pillow_scan), ("scan+strip", lambda d: strip(d), pillow_strip)):
            s1, r1 = _rate(ours, items)
            s2, r2 = _rate(base, items)
            print(f"  {label:10s} imgpipe {r1:9.0f} img/s ({s1:.2f} s)   Pillow baseline {r2:9.0f} img/s "
                  f"({s2:.2f} s)   ratio {r1 / r2:.1f}x")


def bench_faces(limit: int | None) -> None:
    import numpy as np
    from PIL import Image

    from imgpipe.privacy.faces import DETECTORS, detect_faces

    faces = _members(SHARED / "faces-dev.tar.gz", limit)
    # Negatives at photograph size (CIFAR's 32x32 images are below faces.MIN_SIDE and never searched);
    # every detection on a raccoon photograph counts as a false positive.
    others = _members(SHARED / "raccoon-voc.tar.gz", len(faces))

    def arrays(items):
        return [np.asarray(Image.open(io.BytesIO(d)).convert("RGB")) for _n, d in items]

    people, nobody = arrays(faces), arrays(others)
    groups = {}
    for name, _ in faces:
        groups.setdefault(name.split("/")[1], []).append(len(groups.get(name.split("/")[1], [])))
    for detector in DETECTORS:
        try:
            start = time.perf_counter()
            hits = [len(detect_faces(a, detector)) > 0 for a in people]
            seconds = time.perf_counter() - start
            false = [len(detect_faces(a, detector)) > 0 for a in nobody]
        except ImportError as exc:
            print(f"{detector}: not installed ({exc})")
            continue
        by_group = {}
        for (name, _d), hit in zip(faces, hits, strict=True):
            by_group.setdefault(name.split("/")[1], []).append(hit)
        detail = ", ".join(f"{g} {sum(h)}/{len(h)}" for g, h in sorted(by_group.items()))
        print(f"{detector}: recall {sum(hits)}/{len(hits)} = {np.mean(hits):.3f} ({detail}); "
              f"images with a detection among {len(nobody)} raccoon photographs: {sum(false)}; "
              f"{len(people) / seconds:.1f} img/s on the photographs ({seconds:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["metadata", "faces"])
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    (bench_metadata if args.what == "metadata" else bench_faces)(args.limit)


if __name__ == "__main__":
    main()
