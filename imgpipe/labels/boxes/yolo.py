"""YOLO text labels: ``labels/**/<image stem>.txt`` beside ``images/**``, one ``class cx cy w h`` line
per box (shares of the image, 0..1), classes from ``data.yaml`` (``names``), ``classes.txt`` or
``obj.names``. ``images/{train,val,test}/`` (and ``labels/{...}/``) give the source split.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from imgpipe.errors import LabelError
from imgpipe.labels.boxes.table import RawBoxes, parse_number
from imgpipe.rawdata import SPLIT_DIRS

CLASS_FILES = ("data.yaml", "dataset.yaml", "classes.txt", "obj.names")


def class_file(root: Path) -> Path | None:
    for name in CLASS_FILES:
        if (root / name).is_file():
            return root / name
    return None


def yolo_names(path: Path, name: str) -> list[str]:
    if path.suffix in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise LabelError(f"{name}: not valid YAML: {exc}") from None
        names = data.get("names") if isinstance(data, dict) else None
        if isinstance(names, dict):  # {0: cat, 1: dog}
            try:
                return [str(names[k]) for k in sorted(names, key=int)]
            except (TypeError, ValueError):
                raise LabelError(f"{name}: 'names' keys must be class ids 0..n-1") from None
        if isinstance(names, list):
            return [str(n) for n in names]
        raise LabelError(f"{name}: no 'names' list of classes")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def label_dir(root: Path) -> Path:
    return root / "labels" if (root / "labels").is_dir() else root


def _split(parts: tuple[str, ...]) -> str:
    """labels/{train,val,test}/...: only the first folder names a split."""
    return SPLIT_DIRS.get(parts[0].lower(), "") if parts else ""


def read_yolo(path: Path, name: str) -> RawBoxes:
    root = Path(path)
    if root.is_file():
        raise LabelError(f"{name}: YOLO labels are a folder (labels/ beside images/), not one file")
    names_file = class_file(root) or class_file(root.parent)
    if names_file is None:
        raise LabelError(f"{name}: YOLO labels need the class names: data.yaml, classes.txt or obj.names")
    classes = yolo_names(names_file, f"{name}/{names_file.name}")
    labels = label_dir(root)
    out = RawBoxes()
    files = sorted(p for p in labels.rglob("*.txt") if p != names_file and not p.name.startswith("."))
    for file in files:
        rel = file.relative_to(labels)
        file_name = f"{name}/{file.relative_to(root).as_posix()}"
        # labels/train/x.txt names images/train/x.<any extension>: matched by stem.
        reference = "/".join(("images", *rel.parent.parts, rel.stem)) if labels != root \
            else "/".join((*rel.parent.parts, rel.stem))
        split = _split(rel.parent.parts)
        lines = [(n, line.split()) for n, line in enumerate(file.read_text().splitlines(), 1) if line.strip()]
        if not lines:
            out.empty_images.append((reference, file_name, split))
        for n, values in lines:
            where = f"{file_name}: line {n}"
            if len(values) != 5:
                raise LabelError(f"{where}: expected 'class x_center y_center width height', got {len(values)} "
                                 "values (segmentation polygons are not boxes)")
            if not values[0].isdigit():
                raise LabelError(f"{where}: class id {values[0]!r} is not a whole number")
            class_id = int(values[0])
            if class_id >= len(classes):
                raise LabelError(f"{where}: class id {class_id} is out of range "
                                 f"({len(classes)} classes in {names_file.name})")
            box = [parse_number(v, where, k) for v, k in zip(values[1:], ("x_center", "y_center", "width", "height"),
                                                              strict=True)]
            for value, key in zip(box, ("x_center", "y_center", "width", "height"), strict=True):
                if not 0.0 <= value <= 1.0:
                    raise LabelError(f"{where}: {key}={value} is outside 0-1 (YOLO coordinates are shares of "
                                     "the image; pixel values here mean a wrong export)")
            out.add(reference, where, classes[class_id], box, split=split, relative=True)
    if not files:
        raise LabelError(f"{name}: no YOLO .txt label files found")
    return out
