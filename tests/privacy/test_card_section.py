"""The card's privacy section: counts from the stage outputs, "not checked" where none were made."""

from __future__ import annotations

import json

from imgpipe.privacy.card_section import read_privacy_section, render_privacy


def test_section_from_outputs_and_in_words(tmp_path):
    raw, labels, pre = (tmp_path / d for d in ("raw", "labels", "pre"))
    for d in (raw, labels, pre):
        d.mkdir()
    scan = {"images_scanned": 10, "gps_images": 2, "personal_metadata_images": 3, "camera_serial_images": 1,
            "owner_images": 2, "thumbnail_images": 1, "metadata_stripped": 3, "excluded": 2,
            "excluded_by_reason": {"subject asked": 2}}
    (raw / "source.json").write_text(json.dumps({"source": "x", "extra": {"privacy": scan}}))
    (labels / "annotators.json").write_text(json.dumps({"annotators": [], "pseudonymised": 4}))
    section = read_privacy_section(raw, labels, pre)
    assert {k: section[k] for k in ("gps_images", "personal_metadata_images", "faces_found", "faces_blurred",
                                    "annotators_pseudonymised", "excluded")} == {
        "gps_images": 2, "personal_metadata_images": 3, "faces_found": None, "faces_blurred": None,
        "annotators_pseudonymised": 4, "excluded": 2}
    text = "\n".join(render_privacy(section))
    assert "2 carried a GPS position and 3 personal metadata" in text and "3 were stored without" in text
    assert "Faces: not checked" in text and "4 annotators named by keyed pseudonyms" in text
    assert "2 images excluded and never stored (subject asked: 2)" in text
    (pre / "faces.json").write_text(json.dumps({"faces_found": 5, "faces_blurred": 5, "action": "blur"}))
    assert "5 found; 5 blurred" in "\n".join(render_privacy(read_privacy_section(raw, labels, pre)))
    nothing = render_privacy(read_privacy_section(tmp_path / "none", tmp_path / "none", tmp_path / "none"))
    assert "Metadata of the originals: not checked" in "\n".join(nothing)
