"""Typed views of ``params.yaml``: each stage loads only its own section.

Unknown keys are errors, so a typo in ``params.yaml`` or in ``dvc exp run -S`` fails loudly
instead of being silently ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from imgpipe.errors import PipelineError

PARAMS_FILE = Path("params.yaml")

Policy = Literal["drop", "quarantine", "fail"]
Byte = Annotated[int, Field(ge=0, le=255)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PathsParams(_Section):
    raw: Path = Path("data/raw")
    preprocessed: Path = Path("data/preprocessed")
    labels: Path = Path("data/labels")
    validated: Path = Path("data/validated")
    augmented: Path = Path("data/augmented")
    model: Path = Path("models/model.pt")
    train_log: Path = Path("metrics/train")
    suite: Path = Path("expectations/image_dataset.json")


class DownloadParams(_Section):
    source: str = "digits"
    sha256: str = ""
    s3_endpoint_url: str = ""
    retries: int = Field(5, ge=1)
    timeout_s: float = Field(30.0, gt=0)
    cache_dir: Path = Path(".cache/downloads")
    max_extract_bytes: int = Field(16 * 2**30, gt=0)
    max_members: int = Field(2_000_000, gt=0)


class PreprocessParams(_Section):
    mode: Literal["L", "RGB"] = "RGB"
    size: tuple[Annotated[int, Field(ge=1, le=8192)], Annotated[int, Field(ge=1, le=8192)]] = (32, 32)
    resize: Literal["stretch", "center_crop", "letterbox"] = "stretch"
    background: tuple[Byte, Byte, Byte] = (255, 255, 255)
    max_pixels: int = Field(89_478_485, gt=0)
    shard_max_mb: float = Field(256.0, gt=0)
    workers: int = Field(0, ge=0)

    @property
    def channels(self) -> int:
        return 1 if self.mode == "L" else 3


LabelFormat = Literal[
    "auto",
    "imagefolder",
    "csv",
    "tsv",
    "cifar",
    "idx",
    "label-studio-json",
    "label-studio-json-min",
    "label-studio-csv",
]


class LabelsParams(_Section):
    path: str = ""
    sha256: str = ""
    format: LabelFormat = "auto"
    file_column: str = "file"
    label_column: str = "label"
    classes: tuple[str, ...] = ()
    on_missing_label: Policy = "quarantine"
    on_unknown_class: Policy = "quarantine"
    on_conflict: Policy = "quarantine"
    on_orphan_label: Literal["drop", "fail"] = "drop"
    on_unreviewed: Policy = "drop"

    @field_validator("classes", mode="before")
    @classmethod
    def _classes_as_text(cls, value):
        # `classes: [0, 1, 2]` and `-S labels.classes=[0,1]` give ints; class names are text.
        if isinstance(value, list | tuple):
            return tuple(str(v) for v in value)
        return value


class ValidateParams(_Section):
    max_quarantine_fraction: float = Field(0.05, ge=0, le=1)
    val_fraction: float = Field(0.15, ge=0, lt=1)
    test_fraction: float = Field(0.2, ge=0, lt=1)
    seed: int = Field(2024, ge=0)


class AugmentParams(_Section):
    seed: int = Field(7, ge=0)
    copies: int = Field(2, ge=0)
    hflip: bool = False
    vflip: bool = False
    rotate: bool = True
    rotate_degrees: float = Field(10.0, ge=0, le=180)
    crop: bool = True
    crop_scale_min: float = Field(0.8, gt=0, le=1)
    color: bool = True
    brightness: float = Field(0.2, ge=0)
    contrast: float = Field(0.2, ge=0)
    saturation: float = Field(0.2, ge=0)
    hue: float = Field(0.02, ge=0, le=0.5)


class TrainParams(_Section):
    model: Literal["lenet", "resnet"] = "lenet"
    epochs: int = Field(12, ge=1)
    batch_size: int = Field(64, ge=1)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    bf16: bool = True
    threads: int = Field(0, ge=0)
    seed: int = Field(42, ge=0)


class EvaluateParams(_Section):
    batch_size: int = Field(512, ge=1)


SECTIONS: dict[str, type[_Section]] = {
    "paths": PathsParams,
    "download": DownloadParams,
    "preprocess": PreprocessParams,
    "labels": LabelsParams,
    "validate": ValidateParams,
    "augment": AugmentParams,
    "train": TrainParams,
    "evaluate": EvaluateParams,
}

S = TypeVar("S", bound=_Section)


def read_params_file(path: Path = PARAMS_FILE) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise PipelineError(f"{path}: not found (run stages from the repository root)") from None
    except yaml.YAMLError as exc:
        raise PipelineError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise PipelineError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    return data


def load_section(name: str, path: Path = PARAMS_FILE, data: dict | None = None) -> _Section:
    """Load and validate one section of ``params.yaml``."""
    model = SECTIONS[name]
    raw = (read_params_file(path) if data is None else data).get(name) or {}
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{name}.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise PipelineError(f"{path}: invalid parameters: {problems}") from None


def load(name: str, model: type[S], path: Path = PARAMS_FILE) -> S:
    """Typed variant of :func:`load_section`: ``load("train", TrainParams)``."""
    section = load_section(name, path)
    assert isinstance(section, model)
    return section
