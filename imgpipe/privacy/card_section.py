"""The dataset card's ``privacy`` section: what personal data was found and what was removed.

Read from the outputs that record it: ``<raw>/source.json`` (``extra.privacy``: the metadata scan
and take-downs of the download stage), ``<labels>/annotators.json`` (``pseudonymised``) and, when
preprocess searched for faces, ``<preprocessed>/faces.json``. A count the run did not produce is
``None`` in ``card.json`` and "not checked" in ``card.md``, never a reassuring 0.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FACES_FILE = "faces.json"  # under paths.preprocessed, when faces were searched


def _read(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def privacy_section(source: dict, annotators: dict | None = None, faces: dict | None = None) -> dict[str, Any]:
    scan = (source.get("extra") or {}).get("privacy") or {}
    faces = faces or {}
    return {
        "images_scanned": scan.get("images_scanned"),
        "gps_images": scan.get("gps_images"),
        "personal_metadata_images": scan.get("personal_metadata_images"),
        "camera_serial_images": scan.get("camera_serial_images"),
        "owner_images": scan.get("owner_images"),
        "thumbnail_images": scan.get("thumbnail_images"),
        "metadata_stripped": scan.get("metadata_stripped"),
        "faces_found": faces.get("faces_found", scan.get("faces_found")),
        "faces_blurred": faces.get("faces_blurred", scan.get("faces_blurred")),
        "face_action": faces.get("action", scan.get("face_action")),
        "face_images_dropped": scan.get("face_images_dropped"),
        "annotators_pseudonymised": (annotators or {}).get("pseudonymised"),
        "excluded": scan.get("excluded"),
        "excluded_by_reason": scan.get("excluded_by_reason"),
    }


def read_privacy_section(raw_dir: Path, labels_dir: Path, preprocessed_dir: Path) -> dict[str, Any]:
    """The section from the stage outputs (the card stage's hook)."""
    return privacy_section(_read(Path(raw_dir) / "source.json"), _read(Path(labels_dir) / "annotators.json"),
                           _read(Path(preprocessed_dir) / FACES_FILE))


def _n(value: Any) -> str:
    return "not checked" if value is None else str(value)


def render_privacy(section: dict) -> list[str]:
    """``card.md``'s "Privacy" part, in words."""
    s = section
    lines = ["## Privacy", ""]
    if s["images_scanned"] is None:
        lines.append("- Metadata of the originals: not checked (no privacy scan in this download).")
    else:
        stripped = (f"{s['metadata_stripped']} were stored without their metadata"
                    if s["metadata_stripped"] else "none had to be stripped")
        lines.append(f"- Metadata of the originals: {s['images_scanned']} images scanned; {s['gps_images']} carried "
                     f"a GPS position and {s['personal_metadata_images']} personal metadata in all (camera "
                     f"serial {s['camera_serial_images']}, owner/artist {s['owner_images']}, embedded "
                     f"thumbnail {s['thumbnail_images']}); {stripped}.")
    if s["faces_found"] is None:
        lines.append("- Faces: not checked.")
    else:
        dropped = s.get("face_images_dropped")
        lines.append(f"- Faces: {s['faces_found']} found; {s['faces_blurred']} blurred or pixelated"
                     + (f", {dropped} images with faces dropped" if dropped else "")
                     + f" (privacy.faces: {s['face_action']}), before any copy was stored.")
    pseudo = s["annotators_pseudonymised"]
    lines.append("- Annotators: " + ("no annotator identities in the labels." if not pseudo else
                                     f"{pseudo} annotators named by keyed pseudonyms, never by email or name."))
    excluded = s["excluded"]
    if excluded:
        reasons = ", ".join(f"{reason}: {n}" for reason, n in (s["excluded_by_reason"] or {}).items())
        lines.append(f"- Take-downs: {excluded} images excluded and never stored ({reasons}).")
    else:
        lines.append(f"- Take-downs: {_n(excluded) if excluded is None else 'none'}.")
    lines.append("")
    return lines
