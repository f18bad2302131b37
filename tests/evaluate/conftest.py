"""Fixtures for the evaluate and predict tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from evalkit import png, random_images, save_checkpoint


@pytest.fixture
def model_file(tmp_path) -> Path:
    return save_checkpoint(tmp_path / "models" / "model.pt")


@pytest.fixture
def image_dir(tmp_path) -> Path:
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    for i, pixels in enumerate(random_images(6)):
        (folder / ("sub" if i % 2 else ".") / f"img{i}.png").write_bytes(png(pixels))
    return folder
