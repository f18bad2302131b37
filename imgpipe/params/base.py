"""What every params section shares: the strict base model and the loader.

Each section of ``params.yaml`` has its own module in this package (``imgpipe.params.train``,
...), so a stage imports, and ``dvc.yaml`` lists, only the sections it reads: editing the train
params' code reruns train and what depends on it, not every stage.

Unknown keys are errors, so a typo in ``params.yaml`` or in ``dvc exp run -S`` fails loudly
instead of being silently ignored.
"""

from __future__ import annotations

import difflib
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
        problems = "; ".join(_problem(name, model, err) for err in exc.errors())
        raise PipelineError(f"{path}: invalid parameters: {problems}") from None


def _problem(section: str, model: type[BaseModel], err: dict) -> str:
    """One problem in words; an unknown key (a typo, or ``-S +train.foo=1``) names its close matches."""
    dotted = ".".join([section, *(str(p) for p in err["loc"])])
    if err["type"] != "extra_forbidden":
        return f"{dotted}: {err['msg']}"
    known = _fields_at(model, err["loc"][:-1])
    close = difflib.get_close_matches(str(err["loc"][-1]), known, n=3)
    parent = dotted.rsplit(".", 1)[0]
    hint = f" (a typo? did you mean {' or '.join(f'{parent}.{c}' for c in close)}?)" if close else " (a typo?)"
    return f"unknown key {dotted}: not a param of the {section} stage{hint}"


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The field names of the (sub-)model at ``loc`` inside ``model``; [] when that is not a model."""
    for part in loc:
        field = model.model_fields.get(str(part))
        sub = field.annotation if field is not None else None
        if not (isinstance(sub, type) and issubclass(sub, BaseModel)):
            return []
        model = sub
    return list(model.model_fields)


class EngineParams(BaseModel):
    """The engine keys of a section whose per-item work can run beyond this process (preprocess,
    validate): :mod:`imgpipe.engine`, ``docs/scale.md``. A mixin (``class XParams(Section,
    EngineParams)``), so the keys read ``preprocess.engine``. The engine never changes an output
    byte: switching it reruns only that stage, whose outputs keep their hashes."""

    engine: Literal["local", "dask"] = "local"
    # engine dask: a scheduler's address (tcp://host:8786); empty = a LocalCluster of
    # dask_workers processes on this machine.
    dask_address: str = ""
    dask_workers: int = Field(2, ge=1)
