"""Label Studio review of boxes: image tasks with every box drawn.

Each task shows one image; the current boxes are an annotation (so an export of the reviewed
project carries the whole box set back through ``labels.path``), and a suggested class for a box
(``box_conflict``, or ``label_issue`` on a crop item) is a prediction on the same rectangle.
Images with a finding that is not ``kept`` come first, in the review table's order.
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

import pandas as pd

ANNOTATOR = "imgpipe-current-boxes"
MODEL_VERSION = "imgpipe-validate"
FROM_NAME, TO_NAME = "label", "image"


def _region(box, label: str) -> dict:
    w, h = float(box.image_width), float(box.image_height)
    return {"id": f"box{box.box_id}", "type": "rectanglelabels", "from_name": FROM_NAME, "to_name": TO_NAME,
            "original_width": int(w), "original_height": int(h), "image_rotation": 0,
            "value": {"x": box.xmin / w * 100, "y": box.ymin / h * 100, "width": (box.xmax - box.xmin) / w * 100,
                      "height": (box.ymax - box.ymin) / h * 100, "rotation": 0, "rectanglelabels": [label]}}


def box_tasks(boxes: pd.DataFrame, review: pd.DataFrame | None = None, image_prefix: str = "",
              flagged_only: bool = False) -> list[dict]:
    """Label Studio tasks, one per image with boxes; ``image_prefix`` + item_id is the image URL
    (``/data/local-files/?d=`` for local-files storage)."""
    review = review if review is not None else pd.DataFrame(columns=["item_id", "check", "decision", "group_id",
                                                                     "suggested_label", "suggested_score", "detail"])
    found = review[review["decision"] != "kept"]
    # A finding names its box by group_id (image items) or by item_id (crop items).
    box_key = found["group_id"].where(found["group_id"].astype(str).str.contains("#box", regex=False),
                                      found["item_id"])
    image_of = box_key.astype(str).str.replace(r"#box\d+$", "", regex=True)
    suggestions = {k: (s, sc) for k, s, sc in zip(box_key, found["suggested_label"], found["suggested_score"],
                                                  strict=True) if s}
    checks: dict[str, list[str]] = {}
    for image, check, detail in zip(image_of, found["check"], found["detail"], strict=True):
        checks.setdefault(image, []).append(f"{check}: {detail}" if detail else check)
    flagged = list(dict.fromkeys(image_of))
    rest = [] if flagged_only else [i for i in dict.fromkeys(boxes["item_id"]) if i not in checks]
    by_image = {item: group for item, group in boxes.sort_values(["item_id", "box_id"]).groupby("item_id", sort=False)}
    tasks = []
    for item in [*flagged, *rest]:
        group = by_image.get(item)
        if group is None:
            continue
        current = [_region(b, b.label) for b in group.itertuples(index=False)]
        predicted = []
        scores = []
        for b in group.itertuples(index=False):
            hit = suggestions.get(f"{item}#box{b.box_id}")
            if hit:
                predicted.append(_region(b, hit[0]))
                scores.append(float(hit[1]) if pd.notna(hit[1]) else 0.0)
        task = {"data": {TO_NAME: f"{image_prefix}{item}", "item_id": item,
                         "findings": "; ".join(checks.get(item, []))},
                "annotations": [{"result": current, "completed_by": ANNOTATOR, "was_cancelled": False}],
                "predictions": []}
        if predicted:
            task["predictions"] = [{"model_version": MODEL_VERSION, "score": min(scores) if scores else 0.0,
                                    "result": predicted}]
        tasks.append(task)
    return tasks


def rectangle_config(classes: list[str]) -> str:
    """The labelling config: one image, RectangleLabels over the classes."""
    labels = "\n".join(f"    <Label value={quoteattr(c)}/>" for c in classes)
    return (f'<View>\n  <Image name="{TO_NAME}" value="${TO_NAME}"/>\n'
            f'  <RectangleLabels name="{FROM_NAME}" toName="{TO_NAME}">\n{labels}\n  </RectangleLabels>\n'
            '  <Text name="findings" value="$findings"/>\n</View>\n')


def write_box_review(labels_dir, review: pd.DataFrame, out, label_config=None, flagged_only: bool = False,
                     image_prefix: str = "") -> int | None:
    """``imgpipe review --label-studio`` for detection labels: the box tasks into ``out`` (and the
    RectangleLabels config); ``None`` when ``labels_dir`` holds no boxes (classification)."""
    from pathlib import Path

    from imgpipe import contracts as c
    from imgpipe.io import atomic_file, dumps_json

    path = Path(labels_dir) / c.BOXES_FILE
    boxes = c.read_table(path, "labels") if path.exists() else None
    if boxes is None or boxes.empty:
        return None
    tasks = box_tasks(boxes, review, image_prefix=image_prefix, flagged_only=flagged_only)
    with atomic_file(out) as tmp:
        Path(tmp).write_text(dumps_json(tasks))
    if label_config:
        with atomic_file(label_config) as tmp:
            Path(tmp).write_text(rectangle_config(c.read_classes(labels_dir)))
    return len(tasks)
