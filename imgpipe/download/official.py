"""The official datasets: where each is published, its checksums, and how it is laid out.

The registry is plain data, so a test (or an offline mirror) can pass its own copy with other
URLs and checksums to :func:`imgpipe.download.acquire`. Publishers give md5 sums; the md5 is
verified and the sha256 computed on the way in is what ``source.json`` records.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from imgpipe import arrayfiles, rawdata
from imgpipe.download.extract import Budget, extract_archive
from imgpipe.download.fetch import BACKOFF_S, FetchResult, copy_verified, fetch_verified, normalize_sha256
from imgpipe.errors import ChecksumMismatch, SourceError
from imgpipe.params.download import DownloadParams
from imgpipe.rawdata import SourceInfo


@dataclass(frozen=True)
class OfficialFile:
    name: str  # file name as published (kept as is under files/ for IDX)
    url: str
    md5: str


@dataclass(frozen=True)
class OfficialDataset:
    name: str
    layout: rawdata.Layout
    files: tuple[OfficialFile, ...]
    classes: tuple[str, ...] | None = None  # published class names; None: read from the meta file
    homepage: str = ""


_KRIZ = "https://www.cs.toronto.edu/~kriz/"
_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"  # torchvision's mirror
_FASHION = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"


def _idx_files(base: str, md5s: tuple[str, str, str, str]) -> tuple[OfficialFile, ...]:
    names = [name for images, labels, _split in rawdata.IDX_FILES for name in (images, labels)]
    return tuple(OfficialFile(name, base + name, md5) for name, md5 in zip(names, md5s, strict=True))


# md5 sums as published (CIFAR: the authors' page; MNIST/Fashion-MNIST: torchvision.datasets
# MNIST.resources and FashionMNIST.resources), in rawdata.IDX_FILES order for the IDX sets.
OFFICIAL_DATASETS: dict[str, OfficialDataset] = {
    "cifar10": OfficialDataset(
        "cifar10", "cifar10",
        (OfficialFile("cifar-10-python.tar.gz", _KRIZ + "cifar-10-python.tar.gz",
                      "c58f30108f718f92721af3b95e74349a"),),
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
    "cifar100": OfficialDataset(
        "cifar100", "cifar100",
        (OfficialFile("cifar-100-python.tar.gz", _KRIZ + "cifar-100-python.tar.gz",
                      "eb9058c3a382ffc7106e4002c42a8d85"),),
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
    "mnist": OfficialDataset(
        "mnist", "idx",
        _idx_files(_MNIST, ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
                            "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c")),
        classes=tuple(str(d) for d in range(10)),
        homepage="http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": OfficialDataset(
        "fashion-mnist", "idx",
        _idx_files(_FASHION, ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
                              "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310")),
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                 "Bag", "Ankle boot"),
        homepage="https://github.com/zalandoresearch/fashion-mnist",
    ),
}

_CIFAR_META = {"cifar10": f"{rawdata.CIFAR10_DIR}/batches.meta", "cifar100": f"{rawdata.CIFAR100_DIR}/meta"}


def _prefixed(name: str, exc: SourceError) -> SourceError:
    """Name the dataset in front of the failing URL's message (same error class)."""
    return type(exc)(f"{name}: {exc}")


def acquire_official(ds: OfficialDataset, cfg: DownloadParams, tmp: Path,
                     backoff_s: float = BACKOFF_S) -> SourceInfo:
    """Fetch, verify and lay out one official dataset under ``tmp/files``; return its provenance."""
    pin = normalize_sha256(cfg.sha256)
    try:
        if ds.layout in ("cifar10", "cifar100"):
            return _cifar(ds, cfg, tmp, pin, backoff_s)
        return _idx(ds, cfg, tmp, pin, backoff_s)
    except SourceError as exc:
        raise _prefixed(ds.name, exc) from None


def _cifar(ds: OfficialDataset, cfg: DownloadParams, tmp: Path, pin: str | None,
           backoff_s: float) -> SourceInfo:
    (file,) = ds.files
    archive, result, md5 = fetch_verified(file.url, cfg, sha256=pin, md5=file.md5, backoff_s=backoff_s)
    files_dir = tmp / rawdata.FILES_DIR
    budget = Budget(result.url, cfg.max_extract_bytes, cfg.max_members)
    extract_archive(archive, files_dir, budget)
    wanted = rawdata.CIFAR10_FILES if ds.layout == "cifar10" else rawdata.CIFAR100_FILES
    counts = {"train": 0, "test": 0}
    per_file: dict[str, int] = {}
    for rel, split in wanted:
        if not (files_dir / rel).is_file():
            raise SourceError(f"{result.url}: {rel} is missing from the archive")
        images, _labels, _coarse, _names = arrayfiles.load_cifar_batch(files_dir / rel)
        counts[split] += images.shape[0]
        per_file[rel] = int(images.shape[0])
    meta = files_dir / _CIFAR_META[ds.layout]
    if not meta.is_file():
        raise SourceError(f"{result.url}: {_CIFAR_META[ds.layout]} is missing from the archive")
    classes = arrayfiles.load_cifar_meta(meta)
    summary = {"train images": counts["train"], "test images": counts["test"], "classes": len(classes)}
    return SourceInfo(
        source=ds.name, kind="official", layout=ds.layout, url=result.url, final_url=result.final_url,
        size_bytes=result.size_bytes, sha256=result.sha256, classes=classes,
        extra={"md5": md5, "homepage": ds.homepage, "summary": summary, rawdata.ARRAY_COUNTS: per_file},
    )


def _idx(ds: OfficialDataset, cfg: DownloadParams, tmp: Path, pin: str | None,
         backoff_s: float) -> SourceInfo:
    fetched: list[tuple[OfficialFile, Path, FetchResult, str]] = []
    for file in ds.files:
        path, result, md5 = fetch_verified(file.url, cfg, md5=file.md5, backoff_s=backoff_s)
        fetched.append((file, path, result, md5))
    combined = _manifest_sha256([(f.name, r.sha256) for f, _p, r, _m in fetched])
    if pin and combined != pin:
        raise ChecksumMismatch(f"checksum mismatch: expected sha256 {pin}, got {combined} "
                               "(the sha256 of the four files' sha256sum manifest)")
    files_dir = tmp / rawdata.FILES_DIR
    files_dir.mkdir(parents=True)
    for file, path, result, _md5 in fetched:
        copy_verified(path, files_dir / file.name, result.sha256, result.url)
    counts = {}
    for image_file, label_file, split in rawdata.IDX_FILES:
        images = arrayfiles.load_idx(files_dir / image_file)
        labels = arrayfiles.load_idx(files_dir / label_file)
        if images.ndim != 3 or images.dtype.kind != "u" or labels.shape != (images.shape[0],):
            raise SourceError(f"{image_file}: expected uint8 (N, H, W) images and N labels, got "
                              f"{images.dtype} {images.shape} and {labels.shape}")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(ds.classes or ())):
            raise SourceError(f"{label_file}: labels outside 0..{len(ds.classes or ()) - 1}")
        counts[split] = int(images.shape[0])
    per_image_file = {image_file: counts[split] for image_file, _labels, split in rawdata.IDX_FILES}
    base = _common_base([r.url for _f, _p, r, _m in fetched])
    final = _common_base([r.final_url for _f, _p, r, _m in fetched])
    per_file = {f.name: {"url": r.url, "final_url": r.final_url, "size_bytes": r.size_bytes,
                         "sha256": r.sha256, "md5": m} for f, _p, r, m in fetched}
    return SourceInfo(
        source=ds.name, kind="official", layout="idx", url=base, final_url=final,
        size_bytes=sum(r.size_bytes for _f, _p, r, _m in fetched), sha256=combined,
        classes=list(ds.classes or ()),
        extra={"files": per_file, "homepage": ds.homepage, "sha256_of": "sha256sum manifest of the files",
               "summary": {"train images": counts["train"], "test images": counts["test"],
                           "classes": len(ds.classes or ())},
               rawdata.ARRAY_COUNTS: per_image_file},
    )


def _manifest_sha256(entries: list[tuple[str, str]]) -> str:
    lines = "".join(f"{sha}  {name}\n" for name, sha in sorted(entries))
    return hashlib.sha256(lines.encode()).hexdigest()


def _common_base(urls: list[str]) -> str:
    """The folder URL all files share (``https://host/mnist/``), else the first URL."""
    bases = {u.rsplit("/", 1)[0] + "/" for u in urls}
    return bases.pop() if len(bases) == 1 else urls[0]

