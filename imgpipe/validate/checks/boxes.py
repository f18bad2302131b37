"""Box checks (``labels.task: detection``): one plug-in per review ``check`` value.

They read ``ctx.tables["boxes"]`` (``data/labels/boxes.parquet``) and do nothing without it. A
finding's ``item_id`` is the classification item the box belongs to: the crop item
``<image>#box<box_id>`` with ``labels.detection.crops``, else the image (then ``group_id`` names
the box, and a drop/quarantine policy removes the image). Boxes whose item is not in ``ctx.rows``
(rejected or quarantined before the checks) are skipped.

Every IoU is guarded against a zero union (two empty boxes overlap 0, not NaN).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from imgpipe.contracts import ITEM_ID
from imgpipe.errors import ValidationFailed
from imgpipe.validate.checks.base import (
    POLICY_DECISION,
    Check,
    CheckContext,
    CheckResult,
    empty_findings,
    findings_frame,
    register,
)

BOXES_TABLE = "boxes"


def crop_item_id(item_id: str, box_id: int) -> str:
    return f"{item_id}#box{box_id}"


def located_boxes(ctx: CheckContext) -> pd.DataFrame:
    """The boxes with ``pos``, the ``ctx.rows`` position of their item, and ``name`` (the crop id);
    boxes of items not in ``ctx.rows`` are left out. Sorted by image, then box id. Computed once
    per context and shared by the box checks."""
    cached = getattr(ctx, "_located_boxes", None)
    if cached is not None and cached[0] is ctx.tables.get(BOXES_TABLE) and cached[1] is ctx.rows:
        return cached[2]
    located = _locate(ctx)
    ctx._located_boxes = (ctx.tables.get(BOXES_TABLE), ctx.rows, located)
    return located


def _sides_text(hit: pd.DataFrame) -> list[str]:
    w, h = box_sides(hit)
    return [f"{wi:g} x {hi:g} px" for wi, hi in zip(w, h, strict=True)]


def _locate(ctx: CheckContext) -> pd.DataFrame:
    boxes = ctx.tables.get(BOXES_TABLE)
    if not has_boxes(ctx) or ctx.rows.empty:
        return pd.DataFrame(columns=["item_id", "box_id", "label", "xmin", "ymin", "xmax", "ymax", "image_width",
                                     "image_height", "pos", "name"])
    index = pd.Series(np.arange(len(ctx.rows)), index=ctx.rows[ITEM_ID].to_numpy(dtype=object))
    index = index[~index.index.duplicated()]
    item = boxes["item_id"].to_numpy(dtype=object)
    names = pd.Series([f"{i}#box{b}" for i, b in zip(item, boxes["box_id"].to_numpy(), strict=True)],
                      index=boxes.index, dtype=object)
    pos = names.map(index)
    pos = pos.fillna(pd.Series(item, index=boxes.index, dtype=object).map(index))
    out = boxes.assign(pos=pos, name=names)
    out = out[out["pos"].notna()].astype({"pos": np.int64})
    return out.sort_values(["item_id", "box_id"], kind="stable").reset_index(drop=True)


def box_sides(boxes: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return ((boxes["xmax"] - boxes["xmin"]).to_numpy(np.float64),
            (boxes["ymax"] - boxes["ymin"]).to_numpy(np.float64))


def same_image_pairs(item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair ``(i, j)``, ``i < j``, of rows with the same item id (rows sorted by item id)."""
    n = len(item_ids)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, item_ids[1:] != item_ids[:-1]])
    ends = np.r_[starts[1:], n]
    end_of = np.repeat(ends, ends - starts)
    counts = end_of - np.arange(n) - 1  # later boxes of the same image
    first = np.repeat(np.arange(n), counts)
    offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return first, first + 1 + offset


def pair_iou(boxes: pd.DataFrame, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """IoU of box pairs; 0 where the union is empty (degenerate boxes)."""
    x0, y0, x1, y1 = (boxes[c].to_numpy(np.float64) for c in ("xmin", "ymin", "xmax", "ymax"))
    inter_w = np.clip(np.minimum(x1[i], x1[j]) - np.maximum(x0[i], x0[j]), 0, None)
    inter_h = np.clip(np.minimum(y1[i], y1[j]) - np.maximum(y0[i], y0[j]), 0, None)
    inter = inter_w * inter_h
    area = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = area[i] + area[j] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


class BoxCheck(Check):
    section = "boxes"
    policy_key: str = ""

    def decision(self, ctx: CheckContext) -> str:
        return POLICY_DECISION[getattr(self.params(ctx.cfg), self.policy_key)]

    def findings(self, ctx: CheckContext, boxes: pd.DataFrame, mask: np.ndarray, score, detail, decision=None,
                 suggested="") -> pd.DataFrame:
        hit = boxes[mask]
        pick = lambda v: v[mask] if isinstance(v, np.ndarray) else v  # noqa: E731
        detail = detail(hit) if callable(detail) else pick(detail)  # text only for the boxes found
        return findings_frame(ctx.rows, hit["pos"].to_numpy(), self.name, pick(score),
                              pick(decision) if decision is not None else self.decision(ctx),
                              group=hit["name"].tolist(), suggested=pick(suggested), detail=detail)

    def applies(self, ctx: CheckContext) -> bool:
        return has_boxes(ctx)  # classification labels: nothing to check, nothing to count

    def run(self, ctx: CheckContext) -> CheckResult:
        boxes = located_boxes(ctx)
        if boxes.empty:
            return CheckResult(empty_findings(), {f"{self.name}_found": 0})
        found = self.find(ctx, boxes)
        return CheckResult(found, {f"{self.name}_found": int(len(found))})

    def find(self, ctx: CheckContext, boxes: pd.DataFrame) -> pd.DataFrame:  # pragma: no cover - interface
        raise NotImplementedError


@register
class BoxEmpty(BoxCheck):
    name = "box_empty"
    writes = ("box_empty",)
    order = 70
    policy_key = "on_empty"

    def find(self, ctx, boxes):
        w, h = box_sides(boxes)
        mask = (w <= 0) | (h <= 0)
        return self.findings(ctx, boxes, mask, np.minimum(w, h), _sides_text)


@register
class BoxOutside(BoxCheck):
    name = "box_outside"
    writes = ("box_outside",)
    order = 71
    policy_key = "on_outside"

    def find(self, ctx, boxes):
        x0, y0, x1, y1 = (boxes[c].to_numpy(np.float64) for c in ("xmin", "ymin", "xmax", "ymax"))
        width, height = (boxes[c].to_numpy(np.float64) for c in ("image_width", "image_height"))
        mask = (x0 < 0) | (y0 < 0) | (x1 > width) | (y1 > height)
        area = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
        inside = (np.clip(np.minimum(x1, width) - np.maximum(x0, 0), 0, None)
                  * np.clip(np.minimum(y1, height) - np.maximum(y0, 0), 0, None))
        # score: the share of the box outside the image (1 = wholly outside)
        outside = np.divide(area - inside, area, out=np.ones_like(area), where=area > 0)
        def detail(hit):
            return [f"box ({a:g}, {b:g})-({c:g}, {d:g}) on a {int(w)} x {int(h)} image" for a, b, c, d, w, h in
                    zip(hit["xmin"], hit["ymin"], hit["xmax"], hit["ymax"], hit["image_width"], hit["image_height"],
                        strict=True)]

        return self.findings(ctx, boxes, mask, outside, detail)


@register
class BoxTiny(BoxCheck):
    name = "box_tiny"
    writes = ("box_tiny",)
    order = 72
    policy_key = "on_tiny"

    def find(self, ctx, boxes):
        w, h = box_sides(boxes)
        side = np.minimum(w, h)
        mask = (side > 0) & (side < self.params(ctx.cfg).min_side)  # empty boxes are box_empty's
        return self.findings(ctx, boxes, mask, side, _sides_text)


@register
class BoxAspect(BoxCheck):
    name = "box_aspect"
    writes = ("box_aspect",)
    order = 73
    policy_key = "on_aspect"

    def find(self, ctx, boxes):
        w, h = box_sides(boxes)
        ok = (w > 0) & (h > 0)
        aspect = np.divide(np.maximum(w, h), np.minimum(w, h), out=np.ones_like(w), where=ok)
        mask = ok & (aspect > self.params(ctx.cfg).max_aspect)
        return self.findings(ctx, boxes, mask, aspect, _sides_text)


def _overlaps(boxes: pd.DataFrame, same_class: bool, threshold: float):
    """Pairs of one image whose IoU is above ``threshold``, of the same or of different classes."""
    i, j = same_image_pairs(boxes["item_id"].to_numpy(dtype=object))
    labels = boxes["label"].to_numpy(dtype=object)
    keep = (labels[i] == labels[j]) if same_class else (labels[i] != labels[j])
    i, j = i[keep], j[keep]
    iou = pair_iou(boxes, i, j)
    hit = iou > threshold
    return i[hit], j[hit], iou[hit]


@register
class BoxDuplicate(BoxCheck):
    name = "box_duplicate"
    writes = ("box_duplicate",)
    order = 74
    policy_key = "on_duplicate"

    def find(self, ctx, boxes):
        i, j, iou = _overlaps(boxes, True, self.params(ctx.cfg).duplicate_iou)
        # the later box of each pair is the copy; the first box (lowest box_id) is kept
        best = pd.DataFrame({"j": j, "i": i, "iou": iou}).sort_values(["j", "iou"], ascending=[True, False],
                                                                       kind="stable").drop_duplicates("j")
        mask = np.zeros(len(boxes), dtype=bool)
        mask[best["j"].to_numpy()] = True
        score = np.zeros(len(boxes))
        score[best["j"].to_numpy()] = best["iou"].to_numpy()
        detail = np.full(len(boxes), "", dtype=object)
        ids = boxes["box_id"].to_numpy()
        detail[best["j"].to_numpy()] = [f"IoU {v:.3f} with box {ids[k]} of the same class"
                                        for v, k in zip(best["iou"], best["i"], strict=True)]
        return self.findings(ctx, boxes, mask, score, detail)


@register
class BoxConflict(BoxCheck):
    name = "box_conflict"
    writes = ("box_conflict",)
    order = 75
    policy_key = "on_conflict"

    def find(self, ctx, boxes):
        i, j, iou = _overlaps(boxes, False, self.params(ctx.cfg).conflict_iou)
        # both boxes are listed: which class is right is a person's call; each suggests the other's class
        pairs = pd.DataFrame({"box": np.r_[i, j], "other": np.r_[j, i], "iou": np.r_[iou, iou]})
        pairs = pairs.sort_values(["box", "iou"], ascending=[True, False], kind="stable").drop_duplicates("box")
        mask = np.zeros(len(boxes), dtype=bool)
        mask[pairs["box"].to_numpy()] = True
        score, suggested = np.zeros(len(boxes)), np.full(len(boxes), "", dtype=object)
        detail = np.full(len(boxes), "", dtype=object)
        labels = boxes["label"].to_numpy(dtype=object)
        score[pairs["box"].to_numpy()] = pairs["iou"].to_numpy()
        suggested[pairs["box"].to_numpy()] = labels[pairs["other"].to_numpy()]
        ids = boxes["box_id"].to_numpy()
        detail[pairs["box"].to_numpy()] = [f"IoU {v:.3f} with box {ids[o]} ({labels[o]})"
                                           for v, o in zip(pairs["iou"], pairs["other"], strict=True)]
        return self.findings(ctx, boxes, mask, score, detail, suggested=suggested)


@register
class BoxCount(BoxCheck):
    """Images with no boxes or more than ``max_boxes``; a class with fewer than ``min_class_boxes``
    boxes fails the stage, checked by Great Expectations like the other per-class bounds."""

    name = "box_count"
    writes = ("box_count",)
    order = 76
    policy_key = "on_count"

    def applies(self, ctx: CheckContext) -> bool:
        return has_boxes(ctx)

    def run(self, ctx):
        boxes = ctx.tables.get(BOXES_TABLE)
        if boxes is None:
            return CheckResult(empty_findings(), {"box_count_found": 0})
        cfg = self.params(ctx.cfg)
        counts = boxes["label"].value_counts()
        per_class = pd.DataFrame({"class": list(ctx.classes),
                                  "boxes": [int(counts.get(c, 0)) for c in ctx.classes]})
        failing = class_bound_failures(per_class, cfg.min_class_boxes)
        if failing:
            raise ValidationFailed(f"{BOXES_TABLE}: classes with fewer than {cfg.min_class_boxes} boxes "
                                   f"(validate.boxes.min_class_boxes): "
                                   + ", ".join(f"{c} ({n})" for c, n in failing))
        crops = ctx.rows[ITEM_ID].str.contains("#box", regex=False).any()
        parts = []
        if not crops:  # an image item: count its boxes (a crop item is one box by construction)
            per_image = boxes["item_id"].value_counts()
            n = ctx.rows[ITEM_ID].map(per_image).fillna(0).astype(np.int64).to_numpy()
            mask = (n == 0) | (n > cfg.max_boxes)
            pos = np.flatnonzero(mask)
            detail = ["no boxes" if k == 0 else f"{k} boxes (validate.boxes.max_boxes {cfg.max_boxes})"
                      for k in n[mask]]
            parts.append(findings_frame(ctx.rows, pos, self.name, n[mask].astype(np.float64),
                                        self.decision(ctx), detail=detail))
        found = pd.concat(parts, ignore_index=True) if parts else empty_findings()
        return CheckResult(found, {"box_count_found": int(len(found))},
                           detail={"boxes_per_class": dict(zip(per_class["class"], per_class["boxes"], strict=True))},
                           same_split=crop_groups(ctx.rows[ITEM_ID]) if crops else None)


def has_boxes(ctx: CheckContext) -> bool:
    """True when the labels carry boxes: the labels stage writes an empty ``boxes.parquet`` for
    classification labels, and the box checks then neither run nor add counters."""
    boxes = ctx.tables.get(BOXES_TABLE)
    return boxes is not None and not boxes.empty and "box_id" in boxes.columns


def crop_groups(item_ids: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of row positions that must share a split: the crops of one image, chained."""
    image = item_ids.str.replace(r"#box\d+$", "", regex=True).to_numpy()
    order = np.argsort(image, kind="stable")
    same = image[order][1:] == image[order][:-1]
    return order[:-1][same], order[1:][same]


def class_bound_failures(per_class: pd.DataFrame, minimum: int) -> list[tuple[str, int]]:
    """Classes below ``minimum`` boxes, by a real GX expectation on the (class, boxes) table."""
    if per_class.empty or minimum <= 0:
        return []
    from imgpipe.validate.suite import run_suite

    suite = {"name": "box_classes", "expectations": [{
        "type": "expect_column_values_to_be_between",
        "kwargs": {"column": "boxes", "min_value": {"$PARAMETER": "min_class_boxes"}},
        "meta": {"level": "table", "reason": "too few boxes of a class"}}]}
    outcome = run_suite(per_class, suite, {"min_class_boxes": minimum}, "validate.boxes")[0]
    rows = per_class.iloc[outcome.failing_rows]
    return list(zip(rows["class"], rows["boxes"].astype(int), strict=True))


def draw_boxes(tile, boxes: pd.DataFrame, highlight: set[int] = frozenset()):
    """A contact-sheet tile (PIL image of the stored, stretched pixels) with ``boxes`` of its
    image drawn, scaled from original pixels; boxes whose id is in ``highlight`` in red, the
    others in yellow. For the review sheets of image items (a crop item is its box already)."""
    from PIL import ImageDraw

    tile = tile.convert("RGB")
    draw = ImageDraw.Draw(tile)
    tw, th = tile.size
    for box in boxes.itertuples(index=False):
        sx, sy = tw / max(int(box.image_width), 1), th / max(int(box.image_height), 1)
        x0, y0 = max(0.0, box.xmin * sx), max(0.0, box.ymin * sy)
        x1, y1 = min(tw - 1.0, box.xmax * sx - 1), min(th - 1.0, box.ymax * sy - 1)
        if x1 >= x0 and y1 >= y0:
            draw.rectangle((x0, y0, x1, y1), outline=(255, 0, 0) if box.box_id in highlight else (255, 220, 0))
    return tile
