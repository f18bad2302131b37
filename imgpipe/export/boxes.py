"""Box writers: the box table back to Pascal VOC, COCO, YOLO and Label Studio JSON.

Each writer takes the box table (``BOX_COLUMNS``), the images to list (``item_id``,
``image_width``, ``image_height``, ``source_split``: images without boxes too) and the class
list, and writes into ``out_dir`` what the matching reader in :mod:`imgpipe.labels.boxes` reads
back to the same table (``tests/boxes/test_export.py``). Image files are not copied: references
are the images' ``item_id`` paths, which the importer matches against the source's images.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from imgpipe.io import atomic_dir, dumps_json

IMAGE_COLUMNS = ("item_id", "image_width", "image_height", "source_split")


def images_of(boxes: pd.DataFrame) -> pd.DataFrame:
    """The images the boxes are on, when no fuller image list is at hand."""
    return boxes[list(IMAGE_COLUMNS)].drop_duplicates("item_id").sort_values("item_id").reset_index(drop=True)


def _num(value: float) -> str:
    return repr(float(value))


def _per_image(boxes: pd.DataFrame) -> dict[str, pd.DataFrame]:
    ordered = boxes.sort_values(["item_id", "box_id"], kind="stable")
    return {item: group for item, group in ordered.groupby("item_id", sort=False)}


def write_voc(boxes: pd.DataFrame, images: pd.DataFrame, classes: list[str], out_dir: Path) -> dict:
    groups = _per_image(boxes)
    splits: dict[str, list[str]] = {}
    with atomic_dir(out_dir) as tmp:
        for image in images.itertuples(index=False):
            path = PurePosixPath(image.item_id)
            root = ET.Element("annotation")
            ET.SubElement(root, "folder").text = str(path.parent) if str(path.parent) != "." else ""
            ET.SubElement(root, "filename").text = path.name
            size = ET.SubElement(root, "size")
            ET.SubElement(size, "width").text = str(int(image.image_width))
            ET.SubElement(size, "height").text = str(int(image.image_height))
            ET.SubElement(size, "depth").text = "3"
            for box in (groups.get(image.item_id, boxes.iloc[:0])).itertuples(index=False):
                obj = ET.SubElement(root, "object")
                ET.SubElement(obj, "name").text = box.label
                ET.SubElement(obj, "truncated").text = str(int(box.truncated))
                ET.SubElement(obj, "difficult").text = str(int(box.difficult))
                bnd = ET.SubElement(obj, "bndbox")
                # VOC is 1-based with inclusive max; the table is 0-based with exclusive max
                for tag, value in (("xmin", box.xmin + 1), ("ymin", box.ymin + 1), ("xmax", box.xmax),
                                   ("ymax", box.ymax)):
                    ET.SubElement(bnd, tag).text = _num(round(value, 2))
            ET.indent(root)
            target = tmp / "Annotations" / path.with_suffix(".xml")
            target.parent.mkdir(parents=True, exist_ok=True)
            ET.ElementTree(root).write(target, encoding="utf-8", xml_declaration=False)
            if image.source_split:
                splits.setdefault(image.source_split, []).append(str(path.with_suffix("")))
        if splits:
            (tmp / "ImageSets" / "Main").mkdir(parents=True)
            for split, stems in sorted(splits.items()):
                # VOC lists ids (file stems); an id naming files in two folders is ambiguous there
                (tmp / "ImageSets" / "Main" / f"{split}.txt").write_text(
                    "".join(f"{PurePosixPath(s).name}\n" for s in stems))
    return {"format": "voc", "images": len(images), "boxes": len(boxes)}


def write_coco(boxes: pd.DataFrame, images: pd.DataFrame, classes: list[str], out_dir: Path) -> dict:
    groups = _per_image(boxes)
    category = {c: i + 1 for i, c in enumerate(classes)}
    files: dict[str, dict] = {}
    ann_id = 0
    for image_id, image in enumerate(images.itertuples(index=False), 1):
        doc = files.setdefault(image.source_split or "all", {
            "info": {"description": "imgpipe export"}, "images": [], "annotations": [],
            "categories": [{"id": i, "name": c, "supercategory": ""} for c, i in category.items()]})
        doc["images"].append({"id": image_id, "file_name": image.item_id, "width": int(image.image_width),
                              "height": int(image.image_height)})
        for box in groups.get(image.item_id, boxes.iloc[:0]).itertuples(index=False):
            ann_id += 1
            w, h = box.xmax - box.xmin, box.ymax - box.ymin
            doc["annotations"].append({"id": ann_id, "image_id": image_id, "category_id": category[box.label],
                                       "bbox": [box.xmin, box.ymin, w, h], "area": max(w, 0) * max(h, 0),
                                       "iscrowd": int(box.iscrowd), "segmentation": []})
    with atomic_dir(out_dir) as tmp:
        (tmp / "annotations").mkdir()
        for split, doc in sorted(files.items()):
            (tmp / "annotations" / f"instances_{split}.json").write_text(dumps_json(doc))
    return {"format": "coco", "images": len(images), "boxes": len(boxes)}


def write_yolo(boxes: pd.DataFrame, images: pd.DataFrame, classes: list[str], out_dir: Path) -> dict:
    groups = _per_image(boxes)
    index = {c: i for i, c in enumerate(classes)}
    with atomic_dir(out_dir) as tmp:
        (tmp / "data.yaml").write_text(
            "# imgpipe export: labels/<split>/<image path>.txt, one 'class cx cy w h' line per box\n"
            f"nc: {len(classes)}\nnames: {json.dumps(list(classes))}\n")
        for image in images.itertuples(index=False):
            w, h = float(image.image_width), float(image.image_height)
            lines = []
            for box in groups.get(image.item_id, boxes.iloc[:0]).itertuples(index=False):
                cx, cy = (box.xmin + box.xmax) / 2 / w, (box.ymin + box.ymax) / 2 / h
                bw, bh = (box.xmax - box.xmin) / w, (box.ymax - box.ymin) / h
                lines.append(f"{index[box.label]} {_num(cx)} {_num(cy)} {_num(bw)} {_num(bh)}\n")
            rel = PurePosixPath(image.item_id).with_suffix(".txt")
            target = tmp / "labels" / (image.source_split or "") / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("".join(lines))
    return {"format": "yolo", "images": len(images), "boxes": len(boxes)}


def write_label_studio(boxes: pd.DataFrame, images: pd.DataFrame, classes: list[str], out_dir: Path) -> dict:
    groups = _per_image(boxes)
    tasks = []
    ann_id = 0
    for task_id, image in enumerate(images.itertuples(index=False), 1):
        w, h = int(image.image_width), int(image.image_height)
        annotations = []
        group = groups.get(image.item_id, boxes.iloc[:0])
        for who, mine in group.groupby("annotator", sort=False):
            ann_id += 1
            annotations.append({
                "id": ann_id, "completed_by": who or None, "was_cancelled": False, "ground_truth": False,
                "result": [{
                    "id": f"box{box.box_id}", "type": "rectanglelabels", "from_name": "label", "to_name": "image",
                    "original_width": w, "original_height": h, "image_rotation": 0,
                    "value": {"x": box.xmin / w * 100, "y": box.ymin / h * 100,
                              "width": (box.xmax - box.xmin) / w * 100, "height": (box.ymax - box.ymin) / h * 100,
                              "rotation": 0, "rectanglelabels": [box.label]},
                } for box in mine.itertuples(index=False)],
            })
        tasks.append({"id": task_id, "data": {"image": f"/data/local-files/?d={image.item_id}"},
                      "annotations": annotations, "predictions": []})
    with atomic_dir(out_dir) as tmp:
        (tmp / "tasks.json").write_text(dumps_json(tasks))
    return {"format": "label-studio", "images": len(images), "boxes": len(boxes)}


BOX_WRITERS = {"voc": write_voc, "coco": write_coco, "yolo": write_yolo, "label-studio": write_label_studio}


BOX_CHECK_PREFIX = "box_"
REMOVED = ("dropped", "quarantined")


def validated_boxes(boxes: pd.DataFrame, dataset: pd.DataFrame, review: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(boxes, images)`` after the checks' decisions: a box stays when its item (the crop item
    ``<image>#box<id>``, or the image) is in the validated dataset and no box check dropped or
    quarantined it; kept boxes are clipped to their image (``box_outside`` kept them)."""
    names = boxes["item_id"].astype(str) + "#box" + boxes["box_id"].astype(str)
    kept_items = set(dataset["item_id"])
    crops = dataset["item_id"].str.contains("#box", regex=False).any()
    keep = names.isin(kept_items) if crops else boxes["item_id"].isin(kept_items)
    removed = review[review["check"].str.startswith(BOX_CHECK_PREFIX) & review["decision"].isin(REMOVED)]
    keep &= ~names.isin(set(removed["group_id"]) | set(removed["item_id"]))
    out = boxes[keep].copy()
    for lo, hi, size in (("xmin", "xmax", "image_width"), ("ymin", "ymax", "image_height")):
        for col in (lo, hi):
            out[col] = out[col].clip(lower=0.0, upper=out[size].astype(np.float64))
    out = out.reset_index(drop=True)
    if crops:
        images = images_of(out)
    else:  # every validated image, with or without boxes (sizes from the box table or the manifest)
        sizes = boxes.drop_duplicates("item_id").set_index("item_id")
        listed = dataset.drop_duplicates("item_id").sort_values("item_id")
        width = listed["item_id"].map(sizes["image_width"]).fillna(listed.get("orig_width", 0))
        height = listed["item_id"].map(sizes["image_height"]).fillna(listed.get("orig_height", 0))
        split = listed["item_id"].map(sizes["source_split"]).fillna("")
        images = pd.DataFrame({"item_id": listed["item_id"].to_numpy(), "image_width": width.astype(int).to_numpy(),
                               "image_height": height.astype(int).to_numpy(), "source_split": split.to_numpy()})
    return out, images


def export_validated(fmt: str, labels_dir: Path, validated_dir: Path, out_dir: Path) -> dict:
    from imgpipe import contracts as c

    if fmt not in BOX_WRITERS:
        raise ValueError(f"unknown box export format {fmt!r}")
    boxes = c.read_table(Path(labels_dir) / c.BOXES_FILE, "labels")
    if boxes.empty:
        from imgpipe.errors import PipelineError

        raise PipelineError(f"{Path(labels_dir) / c.BOXES_FILE}: no boxes to export (labels.task is not detection?)")
    dataset = c.read_table(Path(validated_dir) / c.DATASET_FILE, "validate")
    review_path = Path(validated_dir) / c.REVIEW_FILE
    review = c.read_table(review_path, "validate") if review_path.exists() else pd.DataFrame(
        {"item_id": [], "check": [], "decision": [], "group_id": []}, dtype="str")
    kept, images = validated_boxes(boxes, dataset, review)
    summary = BOX_WRITERS[fmt](kept, images, c.read_classes(labels_dir), Path(out_dir))
    return {**summary, "left_out": len(boxes) - len(kept)}
