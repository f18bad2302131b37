"""What every params section shares: the strict base model and the loader.

Each section of ``params.yaml`` has its own module in this package (``imgpipe.params.train``,
...), so a stage imports, and ``dvc.yaml`` lists, only the sections it reads: editing the train
params' code reruns train and what depends on it, not every stage.

Unknown keys are errors, so a typo in ``params.yaml`` or in ``dvc exp run -S`` fails loudly
instead of being silently ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from imgpipe.errors import PipelineError

PARAMS_FILE = Path("params.yaml")

Policy = Literal["drop", "quarantine", "fail"]
Byte = Annotated[int, Field(ge=0, le=255)]


class Section(BaseModel):
    """One section of ``params.yaml``: frozen, and unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


S = TypeVar("S", bound=Section)


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


def load(name: str, model: type[S], path: Path = PARAMS_FILE, data: dict | None = None) -> S:
    """Load and validate section ``name`` of ``params.yaml`` as ``model``: ``load("train", TrainParams)``."""
    raw = (read_params_file(path) if data is None else data).get(name) or {}
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{name}.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise PipelineError(f"{path}: invalid parameters: {problems}") from None
