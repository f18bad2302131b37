"""Map what a label file says about an image (a path, a URL, a file name, an id) to an ``item_id``.

Label files name images in many ways: the exact relative path, an absolute or storage path that
ends with it (``/data/upload/3/images/x.png``, ``s3://bucket/images/x.png``), a bare file name, a
Label Studio upload name (``2f1a3b4c-x.png``: an 8-hex id and a dash before the original name), or
an id without the extension. The longest trailing part of the reference that names exactly one
item wins; a reference whose best match names several items is ambiguous and never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import parse_qs, unquote, urlsplit

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")
# Label Studio prefixes uploaded files with the first 8 hex digits of a uuid and a dash.
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-(?=.)")


@dataclass(frozen=True)
class Match:
    item_id: str  # "" when no single item matches
    how: str  # path | suffix | name | upload-name | stem | ambiguous | none | empty
    candidates: tuple[str, ...] = ()  # the items an ambiguous reference could mean (first few)

    @property
    def detail(self) -> str:
        if self.how == "ambiguous":
            shown = ", ".join(self.candidates[:3])
            more = f" and {len(self.candidates) - 3} more" if len(self.candidates) > 3 else ""
            return f"ambiguous: matches {len(self.candidates)} images ({shown}{more})"
        if self.how == "empty":
            return "empty image reference"
        return "matches no image"


def reference_parts(reference: str) -> list[str]:
    """The path components a reference names, with URL scheme, host and query removed.

    ``/data/local-files/?d=images/x.png`` (Label Studio local storage) names ``images/x.png``.
    Array item ids (``data_batch_1#5``) keep their ``#``: only real URLs lose a fragment.
    """
    ref = reference.strip().replace("\\", "/")
    if _URL.match(ref) or ("?d=" in ref and ref.startswith("/data/")):
        split = urlsplit(ref)
        query = parse_qs(split.query)
        ref = unquote(query["d"][0] if query.get("d") else split.path)
    return [p for p in ref.split("/") if p not in ("", ".")]


def _suffixes(parts: list[str]) -> Iterable[str]:
    """Trailing sub-paths, longest first: a/b/c -> a/b/c, b/c, c."""
    for k in range(len(parts)):
        yield "/".join(parts[k:])


def _stem_parts(parts: list[str]) -> list[str]:
    return [*parts[:-1], PurePosixPath(parts[-1]).stem] if parts else parts


class ItemMatcher:
    """Index of every item by each trailing sub-path of its id (and of its id without extension)."""

    def __init__(self, item_ids: Iterable[str]) -> None:
        self._by_suffix: dict[str, list[str]] = {}
        self._by_stem: dict[str, list[str]] = {}
        for item_id in item_ids:
            parts = item_id.split("/")
            for key in _suffixes(parts):
                self._by_suffix.setdefault(key, []).append(item_id)
            for key in _suffixes(_stem_parts(parts)):
                self._by_stem.setdefault(key, []).append(item_id)

    @staticmethod
    def _lookup(index: dict[str, list[str]], parts: list[str]) -> tuple[str, list[str]] | None:
        """The longest trailing sub-path of ``parts`` that names any item, with those items."""
        for key in _suffixes(parts):
            if key in index:
                return key, index[key]
        return None

    @staticmethod
    def _result(key: str, hits: list[str], how: str) -> Match:
        if len(hits) > 1:
            return Match("", "ambiguous", tuple(hits))
        return Match(hits[0], how)

    def match(self, reference: str) -> Match:
        parts = reference_parts(reference)
        if not parts:
            return Match("", "empty")
        hit = self._lookup(self._by_suffix, parts)
        if hit:
            key, hits = hit
            exact = key == "/".join(parts) and hits == [key]
            return self._result(key, hits, "path" if exact else "name" if "/" not in key else "suffix")
        # Tried only after the real name failed: a file may legitimately be called "deadbeef-x.png".
        stripped = _UPLOAD_PREFIX.sub("", parts[-1])
        if stripped != parts[-1] and stripped in self._by_suffix:
            return self._result(stripped, self._by_suffix[stripped], "upload-name")
        # An array image written out as a PNG by `imgpipe review --images`: "<file>#<index>.png".
        if "#" in parts[-1]:
            hit = self._lookup(self._by_suffix, _stem_parts(parts))
            if hit:
                return self._result(*hit, "stem")
        # An id column may omit the extension (Kaggle style: "000bec18" for 000bec18.jpg).
        if not PurePosixPath(parts[-1]).suffix:
            hit = self._lookup(self._by_stem, parts)
            if hit:
                return self._result(*hit, "stem")
        return Match("", "none")
