"""The ``privacy`` section: what personal data the pipeline removes (defaults protect people)."""

from __future__ import annotations

from typing import Literal

from imgpipe.params.base import Section

FaceAction = Literal["keep", "blur", "pixelate", "drop"]


class PrivacyParams(Section):
    # Annotator emails/names/ids become keyed pseudonyms (HMAC-SHA256; key: env
    # IMGPIPE_PSEUDONYM_KEY, else .imgpipe/pseudonym.key, never in git or the DVC remote).
    pseudonymise_annotators: bool = True
    # Originals kept in data/raw lose their EXIF/XMP/IPTC (orientation applied first).
    strip_metadata: bool = True
    # Take-downs: rows of item_id / source path / URL / sha256 plus a reason; never packed.
    exclude_file: str = "annotations/exclude.csv"
    # Faces found at full resolution before the resize: keep | blur | pixelate | drop (the image).
    faces: FaceAction = "blur"
