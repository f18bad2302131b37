"""``imgpipe export --format ... --out DIR``: the validated dataset in other tools' formats.

``FORMATS`` maps a format name to its writer ``(boxes, images, classes, out_dir) -> summary``.
(Minimal version from the "boxes" branch; the "versions" branch owns this module.)
"""

from __future__ import annotations

from imgpipe.export.boxes import BOX_WRITERS

FORMATS = {**BOX_WRITERS}
