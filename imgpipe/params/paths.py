"""The ``paths`` section: where each stage's outputs live (dvc.yaml interpolates them)."""

from __future__ import annotations

from pathlib import Path

from imgpipe.params.base import Section


class PathsParams(Section):
    raw: Path = Path("data/raw")
    preprocessed: Path = Path("data/preprocessed")
    labels: Path = Path("data/labels")
    validated: Path = Path("data/validated")
    card: Path = Path("data/card")
    augmented: Path = Path("data/augmented")
    model: Path = Path("models/model.pt")
    train_log: Path = Path("metrics/train")
    suite: Path = Path("expectations/image_dataset.json")
