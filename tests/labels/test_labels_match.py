"""Matching what a label file says about an image to our item ids."""

from __future__ import annotations

import pytest

from imgpipe.labels.importer import ItemMatcher, reference_parts

ITEMS = [
    "images/digit_0001.png", "images/digit_0002.png", "a/x.png", "b/x.png", "train/cat/1.png",
    "cifar-10-batches-py/data_batch_1#5", "deadbeef-real.png",
]


@pytest.mark.parametrize(("reference", "item_id", "how"), [
    ("images/digit_0001.png", "images/digit_0001.png", "path"),
    ("./images/digit_0001.png", "images/digit_0001.png", "path"),
    ("/data/upload/3/images/digit_0002.png", "images/digit_0002.png", "suffix"),
    ("s3://bucket/project/images/digit_0002.png", "images/digit_0002.png", "suffix"),
    ("https://host/static/images/digit_0002.png?token=abc", "images/digit_0002.png", "suffix"),
    ("/data/local-files/?d=mnt/data/images/digit_0001.png", "images/digit_0001.png", "suffix"),
    ("C:\\photos\\images\\digit_0001.png", "images/digit_0001.png", "suffix"),
    ("cat/1.png", "train/cat/1.png", "suffix"),
    ("digit_0001.png", "images/digit_0001.png", "name"),
    ("/data/upload/1/2f1a3b4c-digit_0001.png", "images/digit_0001.png", "upload-name"),
    ("/data/upload/1/deadbeef-real.png", "deadbeef-real.png", "name"),  # a real name wins over stripping
    ("digit_0002", "images/digit_0002.png", "stem"),
    ("data_batch_1#5", "cifar-10-batches-py/data_batch_1#5", "name"),
    ("cifar-10-batches-py/data_batch_1#5", "cifar-10-batches-py/data_batch_1#5", "path"),
    ("  images/digit_0001.png ", "images/digit_0001.png", "path"),
])
def test_references_that_match(reference, item_id, how):
    found = ItemMatcher(ITEMS).match(reference)
    assert (found.item_id, found.how) == (item_id, how)


def test_ambiguous_file_name_is_reported_not_guessed():
    found = ItemMatcher(ITEMS).match("/data/upload/1/0a1b2c3d-x.png")
    assert found.item_id == "" and found.how == "ambiguous"
    assert found.candidates == ("a/x.png", "b/x.png")
    assert found.detail == "ambiguous: matches 2 images (a/x.png, b/x.png)"


@pytest.mark.parametrize(("reference", "how"), [("", "empty"), ("   ", "empty"), ("other/zzz.png", "none"),
                                                 ("digit_0003.png", "none")])
def test_references_that_do_not_match(reference, how):
    assert ItemMatcher(ITEMS).match(reference).how == how


def test_reference_parts():
    assert reference_parts("s3://bucket/a/b.png") == ["a", "b.png"]
    assert reference_parts("/data/local-files/?d=my%20dir/b.png") == ["my dir", "b.png"]
    assert reference_parts("file#3") == ["file#3"]
