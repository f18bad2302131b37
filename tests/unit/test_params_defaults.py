"""One source of truth: every params model's code defaults equal ``params.yaml``, key for key.

A model field missing from params.yaml (a knob nobody can see or set) fails, and so does a key
of params.yaml that its model lacks; nested sub-sections are compared key by key too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from imgpipe.params.base import read_params_file
from tests.unit.test_params_io import section_models

ROOT_PARAMS = read_params_file(Path(__file__).resolve().parents[2] / "params.yaml")
MODELS = section_models()


def _sub_model(model: type[BaseModel], key: str) -> type[BaseModel] | None:
    annotation = model.model_fields[key].annotation
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def mismatches(prefix: str, model: type[BaseModel], data: dict) -> list[str]:
    """Every disagreement between ``model``'s defaults and the ``data`` of params.yaml."""
    problems = []
    fields, keys = set(model.model_fields), set(data)
    problems += [f"{prefix}.{k}: a field of {model.__name__} missing from params.yaml" for k in sorted(fields - keys)]
    problems += [f"{prefix}.{k}: in params.yaml but not a field of {model.__name__}" for k in sorted(keys - fields)]
    for key in sorted(fields & keys):
        info = model.model_fields[key]
        if info.is_required():
            problems.append(f"{prefix}.{key}: no code default (params.yaml has {data[key]!r})")
            continue
        sub = _sub_model(model, key)
        if sub is not None and isinstance(data[key], dict):
            problems += mismatches(f"{prefix}.{key}", sub, data[key])
            continue
        code = info.get_default(call_default_factory=True)
        # Compare as the model sees them: params.yaml's list is the model's tuple, and so on.
        parsed = model.__pydantic_validator__.validate_assignment(model.model_construct(), key, data[key])
        from_yaml = getattr(parsed, key)
        if from_yaml != code:
            problems.append(f"{prefix}.{key}: code default {code!r}, params.yaml {data[key]!r}")
    return problems


def test_every_section_has_a_model():
    assert set(MODELS) == set(ROOT_PARAMS)


@pytest.mark.parametrize("section", sorted(ROOT_PARAMS))
def test_code_defaults_equal_params_yaml(section):
    assert mismatches(section, MODELS[section], ROOT_PARAMS[section] or {}) == []


class _Sub(BaseModel):
    threshold: float = 0.5


class _Model(BaseModel):
    copies: int = 2
    size: tuple[int, int] = (32, 32)
    sub: _Sub = _Sub()


def test_the_comparison_catches_each_kind_of_disagreement():
    assert mismatches("x", _Model, {"copies": 2, "size": [32, 32], "sub": {"threshold": 0.5}}) == []
    assert mismatches("x", _Model, {"copies": 0, "size": [32, 32], "typo": 1, "sub": {"threshold": 0.7}}) == [
        "x.typo: in params.yaml but not a field of _Model",
        "x.copies: code default 2, params.yaml 0",
        "x.sub.threshold: code default 0.5, params.yaml 0.7",
    ]
    assert mismatches("x", _Model, {"copies": 2}) == [
        "x.size: a field of _Model missing from params.yaml",
        "x.sub: a field of _Model missing from params.yaml",
    ]
