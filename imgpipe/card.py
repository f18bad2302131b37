"""The dataset card: what the validated dataset holds, where it came from, what was checked.

``build_card`` turns the validate stage's outputs (plus the download provenance and the class
list) into one plain dict, and ``render_markdown`` writes it for people. Both are deterministic:
the same dataset gives the same bytes, so the card is a versioned DVC output whose hash changes
exactly when the dataset does.

The content hash identifies the dataset independently of file formats: sha256 over one line
``item_id <TAB> pixel_sha256 <TAB> label <TAB> split`` per image, in ``item_id`` order. Two
datasets with the same images (pixels after preprocessing), labels and splits have the same hash,
whatever parquet writer produced the table.

The data-quality metrics are read generically: every key of ``metrics/data_quality.json`` is
carried into the card and listed, so a check added to validate shows up without a change here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from imgpipe import contracts as c
from imgpipe.errors import PipelineError

CARD_JSON = "card.json"  # the card under paths.card (evaluate reads only its per_class.csv)
CARD_MD = "card.md"
PIXEL_SHA256 = "pixel_sha256"  # manifest column: sha256 of the preprocessed pixel bytes
HASH_SPEC = "sha256 over 'item_id\\tpixel_sha256\\tlabel\\tsplit\\n' per image, sorted by item_id"
SOURCE_FIELDS = ("source", "kind", "url", "final_url", "sha256", "size_bytes")


ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip", ".gz", ".csv", ".tsv", ".jsonl", ".parquet", ".txt")


def dataset_name(source: dict) -> str:
    """The card's title: the source's name (``digits``, ``cifar10``), or for an archive, folder or
    URL list its file name without the extension (``https://host/x/photos.tar.gz`` -> ``photos``)."""
    from urllib.parse import urlparse

    text = str(source.get("source") or "").strip()
    if text.startswith("urls:"):
        text = text[len("urls:"):]
    if "/" in text or "\\" in text:
        path = urlparse(text).path if "://" in text else text
        text = path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
        stripped = True
        while stripped:  # list.csv.gz -> list
            stripped = False
            for suffix in ARCHIVE_SUFFIXES:
                if text.lower().endswith(suffix) and len(text) > len(suffix):
                    text, stripped = text[: -len(suffix)], True
                    break
    return text or "dataset"


def content_hash(rows: Iterable[tuple[str, str, str, str]]) -> str:
    """sha256 of the dataset's identity lines (see the module docstring), hex."""
    digest = hashlib.sha256()
    for item_id, pixel, label, split in sorted(rows):
        for part in (item_id, pixel, label, split):
            if "\t" in part or "\n" in part:
                raise PipelineError(f"dataset row {item_id!r}: a tab or newline in {part!r} would make the hash ambiguous")
        digest.update(f"{item_id}\t{pixel}\t{label}\t{split}\n".encode())
    return digest.hexdigest()


def _counts(dataset, classes: list[str]) -> dict[str, dict[str, int]]:
    """Images per split and class; every class listed in every split, zeros included."""
    table: dict[str, dict[str, int]] = {}
    splits = [s for s in c.SPLITS if s in set(dataset[c.SPLIT])]
    splits += sorted(set(dataset[c.SPLIT]) - set(splits))
    grouped = dataset.groupby([c.SPLIT, c.LABEL]).size()
    for split in splits:
        table[split] = {cls: int(grouped.get((split, cls), 0)) for cls in classes}
    return table


def _reasons(quarantine) -> dict[str, int]:
    """Quarantined images per reason (a row with several reasons counts under each)."""
    counts: dict[str, int] = {}
    if quarantine is None or "reasons" not in quarantine.columns:
        return counts
    for reasons in quarantine["reasons"].astype(str):
        for reason in (r.strip() for r in reasons.split(";")):
            if reason:
                counts[reason] = counts.get(reason, 0) + 1
    return dict(sorted(counts.items()))


def build_card(*, dataset, quarantine, classes: list[str], source: dict, quality: dict,
               expectations: dict | None, name: str = "dataset", privacy: dict | None = None) -> dict[str, Any]:
    """The card as a JSON-ready dict."""
    missing = [col for col in (c.ITEM_ID, PIXEL_SHA256, c.LABEL, c.SPLIT) if col not in dataset.columns]
    if missing:
        raise PipelineError(f"{c.DATASET_FILE}: missing column(s) {', '.join(missing)}; rebuild it with `dvc repro -f validate`")
    rows = zip(dataset[c.ITEM_ID].astype(str), dataset[PIXEL_SHA256].astype(str),
               dataset[c.LABEL].astype(str), dataset[c.SPLIT].astype(str), strict=True)
    counts = _counts(dataset, classes)
    checks = []
    for result in (expectations or {}).get("results", []) or []:
        if isinstance(result, dict):
            checks.append(result)
    return {
        "name": name,
        "content_hash": content_hash(rows),
        "content_hash_spec": HASH_SPEC,
        "images": int(len(dataset)),
        "classes": list(classes),
        "counts": counts,
        "split_totals": {split: sum(per.values()) for split, per in counts.items()},
        "source": {key: source.get(key) for key in SOURCE_FIELDS},
        "checks": {
            "suite": (expectations or {}).get("suite"),
            "expectations": checks,
        },
        "removed": {
            "quarantined": int(len(quarantine)) if quarantine is not None else 0,
            "quarantine_reasons": _reasons(quarantine),
        },
        "quality": quality,
        **_crawl_provenance(source),
        **({"privacy": privacy} if privacy is not None else {}),  # imgpipe.privacy.card_section
    }


def _crawl_provenance(source: dict) -> dict[str, Any]:
    """A crawled source's images per licence and URLs refused by a consent rule (from source.json)."""
    if source.get("kind") != "crawl":
        return {}
    extra = source.get("extra") or {}
    return {"crawl": {"images_per_licence": extra.get("licences") or {},
                      "refused_by_consent_rule": extra.get("consent_refusals") or {}}}


def _flatten(data: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(data, dict) and (data or not prefix):
        out: list[tuple[str, Any]] = []
        for key in sorted(data):
            out += _flatten(data[key], f"{prefix}.{key}" if prefix else str(key))
        return out
    return [(prefix, "none" if data == {} else data)]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(card: dict) -> str:
    lines = [f"# Dataset card: {card['name']}", ""]
    lines += [
        f"- content hash: `{card['content_hash']}`",
        f"  ({card['content_hash_spec']})",
        f"- images: {card['images']}",
        f"- classes ({len(card['classes'])}): {', '.join(card['classes'])}",
        "",
        "## Source",
        "",
        "| field | value |",
        "|---|---|",
    ]
    lines += [f"| {key} | {_cell(value)} |" for key, value in card["source"].items()]
    crawl = card.get("crawl")
    for title, head, key in (("Crawled images per licence", "licence", "images_per_licence"),
                             ("URLs refused by a consent rule", "rule", "refused_by_consent_rule")):
        if crawl is not None:
            lines += ["", f"## {title}", "", f"| {head} | count |", "|---|---:|"]
            lines += [f"| {_cell(k)} | {n} |" for k, n in crawl[key].items()] or ["| (none recorded) | |"]
    splits = list(card["counts"])
    lines += ["", "## Images per split and class", "",
              "| class | " + " | ".join(splits) + " | total |",
              "|---|" + "---:|" * (len(splits) + 1)]
    for cls in card["classes"]:
        per = [card["counts"][s].get(cls, 0) for s in splits]
        lines.append(f"| {_cell(cls)} | " + " | ".join(str(n) for n in per) + f" | {sum(per)} |")
    totals = [card["split_totals"][s] for s in splits]
    lines.append("| **total** | " + " | ".join(str(n) for n in totals) + f" | {sum(totals)} |")
    lines += ["", "## Checks applied", ""]
    suite = card["checks"].get("suite")
    if suite:
        lines += [f"Great Expectations suite `{suite}`:", ""]
    expectations = card["checks"]["expectations"]
    if expectations:
        keys = sorted({k for e in expectations for k in e if not isinstance(e[k], dict | list)})
        lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(_cell(e.get(k)) for k in keys) + " |" for e in expectations]
    else:
        lines.append("(no expectation results recorded)")
    lines += ["", "## What the checks removed", "",
              f"Quarantined: {card['removed']['quarantined']} images.", ""]
    reasons = card["removed"]["quarantine_reasons"]
    if reasons:
        lines += ["| reason | images |", "|---|---:|"]
        lines += [f"| {_cell(r)} | {n} |" for r, n in reasons.items()]
        lines.append("")
    lines += ["Data-quality metrics (`metrics/data_quality.json`):", "", "| metric | value |", "|---|---|"]
    lines += [f"| {key} | {_cell(value)} |" for key, value in _flatten(card["quality"])]
    lines.append("")
    if "privacy" in card:
        from imgpipe.privacy.card_section import render_privacy

        lines += render_privacy(card["privacy"])
    return "\n".join(lines)
