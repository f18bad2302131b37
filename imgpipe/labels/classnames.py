"""Class names that differ only by case or surrounding spaces (``cat``, ``Cat``, ``Cat ``) are one
class written several ways, never several classes: ``labels.on_class_variant`` merges them into
one spelling (``merge``, with a report line) or stops the stage (``fail``).

The spelling kept: the one ``labels.classes`` (or the source's class list) gives; otherwise the
spelling most votes use (ties: the first in sorted order, so the choice never depends on row
order). And the stage summary names classes with fewer than :data:`FEW_IMAGES` images.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from imgpipe.errors import LabelError

# Fewer labelled images than this, and a class can neither be learned nor checked: cleanlab's
# K-fold label-issue check (validate.label_issues.folds: 5) needs one image per fold, and a
# stratified train/val split needs several. Named in the summary, not refused: a pilot set may
# be this small on purpose.
FEW_IMAGES = 5


def variant_key(name: str) -> str:
    """What two spellings of one class have in common."""
    return name.strip().casefold()


@dataclass(frozen=True)
class ClassVariant:
    kept: str  # the spelling every variant became
    spellings: dict[str, int]  # each spelling seen, with its vote count (the kept one included)

    @property
    def text(self) -> str:
        merged = ", ".join(f"{s!r} ({n} vote{'s' * (n != 1)})" for s, n in self.spellings.items() if s != self.kept)
        return f"{merged} -> {self.kept!r}"


def check_given_classes(classes: Sequence[str], where: str = "labels.classes") -> None:
    """A class list that itself holds two spellings of one class is refused: which one is meant?"""
    seen: dict[str, str] = {}
    for name in classes:
        other = seen.setdefault(variant_key(str(name)), str(name))
        if other != str(name):
            raise LabelError(f"{where}: {other!r} and {str(name)!r} differ only by case or spaces: list one of them")


def merge_class_variants(votes: pd.DataFrame, known: Sequence[str], on_variant: str,
                         label_file: str) -> tuple[pd.DataFrame, list[ClassVariant]]:
    """The votes with every label spelled as its class's kept spelling, and what was merged.

    ``known``: the class list given (params or source), whose spellings win. ``on_variant``
    ``fail`` raises one :class:`LabelError` line naming the first class written several ways.
    """
    check_given_classes(known)
    canonical = {variant_key(str(c)): str(c) for c in known}
    labels = votes.loc[votes["label"] != "", "label"]
    counts = Counter(labels)
    groups: dict[str, dict[str, int]] = {}
    for spelling in sorted(counts):
        groups.setdefault(variant_key(spelling), {})[spelling] = counts[spelling]
    variants = []
    for key, spellings in sorted(groups.items()):
        if key in canonical and set(spellings) != {canonical[key]}:
            kept = canonical[key]
        elif len(spellings) > 1:
            kept = max(sorted(spellings), key=lambda s: spellings[s])  # the first sorted of the most used
        else:
            continue
        variants.append(ClassVariant(kept, dict(spellings)))
    if not variants:
        return votes, []
    if on_variant == "fail":
        first = variants[0]
        raise LabelError(f"{label_file}: class names that differ only by case or spaces: {first.text}"
                         f"{f' (and {len(variants) - 1} more)' if len(variants) > 1 else ''}; "
                         "fix the label file or set labels.on_class_variant: merge")
    rename = {s: v.kept for v in variants for s in v.spellings}
    out = votes.copy()
    out["label"] = out["label"].map(lambda s: rename.get(s, s)).astype("str")
    return out, variants


def few_images_text(labels: pd.DataFrame, classes: Sequence[str]) -> str:
    """Classes with fewer than FEW_IMAGES labelled images, smallest first: ``'Cat' 1, 'bird' 3``."""
    counts = Counter(labels["label"])
    few = sorted((counts.get(c, 0), c) for c in classes if counts.get(c, 0) < FEW_IMAGES)
    return ", ".join(f"{c!r} {n}" for n, c in few) or "none"


def class_list_text(classes: Sequence[str], limit: int = 30) -> str:
    shown = ", ".join(classes[:limit])
    return shown + (f" and {len(classes) - limit} more" if len(classes) > limit else "")
