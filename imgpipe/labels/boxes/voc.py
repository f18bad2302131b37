"""Pascal VOC XML (LabelImg, CVAT): one ``<annotation>`` file per image.

Accepts a folder of XML files, a VOC root (``Annotations/`` + ``JPEGImages/`` +
``ImageSets/Main/{train,val,test}.txt``, whose lists become the source split), or one XML file.
VOC pixel coordinates are 1-based and inclusive; the table's are 0-based with max exclusive, so
``xmin - 1, ymin - 1, xmax, ymax``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from imgpipe.errors import LabelError
from imgpipe.labels.boxes.table import RawBoxes, parse_number

SPLIT_LISTS = ("train", "val", "test")


def voc_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    annotations = path / "Annotations"
    folder = annotations if annotations.is_dir() else path
    return sorted(p for p in folder.rglob("*.xml") if not p.name.startswith("."))


def voc_root(path: Path) -> Path | None:
    """The folder holding ``ImageSets/Main`` for a root or its ``Annotations`` folder."""
    for root in (path, path.parent):
        if (root / "ImageSets" / "Main").is_dir():
            return root
    found = sorted(path.rglob("ImageSets/Main")) if path.is_dir() else []
    return found[0].parent.parent if found else None


def voc_splits(path: Path) -> dict[str, str]:
    """Image id (file stem) -> split, from ``ImageSets/Main/{train,val,test}.txt``."""
    root = voc_root(path if path.is_dir() else path.parent)
    splits: dict[str, str] = {}
    if root is None:
        return splits
    for split in SPLIT_LISTS:
        listing = root / "ImageSets" / "Main" / f"{split}.txt"
        if listing.is_file():
            for line in listing.read_text().split("\n"):
                if line.strip():
                    splits.setdefault(line.split()[0], split)
    return splits


def _text(node: ET.Element, tag: str, default: str = "") -> str:
    found = node.find(tag)
    return (found.text or "").strip() if found is not None and found.text is not None else default


def _flag(node: ET.Element, tag: str, where: str) -> bool:
    value = _text(node, tag, "0")
    if value.lower() in ("0", "1", "true", "false"):
        return value.lower() in ("1", "true")
    raise LabelError(f"{where}: <{tag}> is {value!r}, expected 0 or 1")


def read_voc_file(path: Path, name: str, splits: dict[str, str], out: RawBoxes) -> None:
    try:
        # expat >= 2.4 refuses entity-expansion bombs; ElementTree never fetches external entities.
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise LabelError(f"{name}: not valid XML: {exc}") from None
    if root.tag != "annotation":
        raise LabelError(f"{name}: not a VOC annotation (root element <{root.tag}>, expected <annotation>)")
    filename = _text(root, "filename")
    stem = Path(filename).stem if filename else path.stem
    reference = filename or path.stem
    folder = _text(root, "folder")
    if filename and folder and "/" not in filename:
        reference = f"{folder}/{filename}"  # narrows the match; a wrong folder falls back to the name
    size = root.find("size")
    dims = (0, 0)
    if size is not None:
        dims = (int(parse_number(_text(size, "width", "0"), f"{name}: <size>", "width")),
                int(parse_number(_text(size, "height", "0"), f"{name}: <size>", "height")))
    split = splits.get(stem, splits.get(path.stem, ""))
    objects = root.findall("object")
    if not objects:
        out.empty_images.append((reference, name, split))
    for k, obj in enumerate(objects, 1):
        where = f"{name}: object {k}"
        label = _text(obj, "name")
        if not label:
            raise LabelError(f"{where}: no <name> (class)")
        box = obj.find("bndbox")
        if box is None:
            raise LabelError(f"{where}: no <bndbox>")
        x0, y0, x1, y1 = (parse_number(_text(box, t, None), where, t) for t in ("xmin", "ymin", "xmax", "ymax"))
        out.add(reference, where, label, (x0 - 1, y0 - 1, x1, y1), size=dims, split=split,
                difficult=_flag(obj, "difficult", where), truncated=_flag(obj, "truncated", where))


def read_voc(path: Path, name: str) -> RawBoxes:
    path = Path(path)
    files = voc_files(path)
    if not files:
        raise LabelError(f"{name}: no VOC XML files found")
    splits = voc_splits(path)
    out = RawBoxes()
    base = path if path.is_dir() else path.parent
    for file in files:
        rel = file.relative_to(base).as_posix() if file != path else file.name
        read_voc_file(file, f"{name}/{rel}" if path.is_dir() else name, splits, out)
    return out
