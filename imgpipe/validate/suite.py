"""The Great Expectations suite: load the user-editable file strictly, run it, report outcomes.

The suite lives in the repository as a GX 1.x JSON file a person can read and edit. Each
expectation's ``meta.level`` says what a failure means: ``row`` quarantines the flagged rows
(with ``meta.reason`` as the reason), ``table`` fails the stage. GX's own result objects carry
run ids and timestamps, so the stage writes its own deterministic summary instead.

GX is lenient with a suite that does not run as written: an unknown expectation type is logged
and dropped, and a misspelled column makes the expectation fail with no rows flagged. A check
that silently does nothing is worse than none, so every expectation is checked before the run
(an object, a known type, known ``$PARAMETER`` names, columns that exist, a row-level one that can
name rows) and every one must come back with a result; anything else fails the stage with one line naming the expectation.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from imgpipe.errors import PipelineError

LEVELS = ("row", "table")
# Keyword arguments of GX expectations that name columns of the batch.
COLUMN_KWARGS = ("column", "column_A", "column_B")
COLUMN_LIST_KWARGS = ("column_list",)


@dataclass(frozen=True)
class ExpectationOutcome:
    type: str
    column: str | None
    level: str
    reason: str
    success: bool
    failing_rows: list[int]  # DataFrame positions, for row-level expectations
    observed: object = None


def _name(i: int, exp: object) -> str:
    kind = exp.get("type") if isinstance(exp, dict) else None
    column = (exp.get("kwargs") or {}).get("column") if isinstance(exp, dict) else None
    what = f"{kind}" + (f" on {column}" if column else "") if kind else "?"
    return f"expectation {i} ({what})"


def load_suite(path: Path) -> dict:
    """Read the suite file and check the shape of every expectation (no GX needed)."""
    try:
        suite = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise PipelineError(f"{path}: expectation suite not found") from None
    except json.JSONDecodeError as exc:
        raise PipelineError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(suite, dict) or not isinstance(suite.get("expectations"), list):
        raise PipelineError(f"{path}: not a GX suite (needs an 'expectations' list)")
    for i, exp in enumerate(suite["expectations"]):
        if not isinstance(exp, dict):
            raise PipelineError(f"{path}: expectation {i} is a {type(exp).__name__}, not an object "
                                "with type, kwargs and meta")
        if not isinstance(exp.get("type"), str) or not exp["type"]:
            raise PipelineError(f"{path}: {_name(i, exp)}: needs a 'type' naming a GX expectation")
        if not isinstance(exp.get("kwargs", {}), dict) or not isinstance(exp.get("meta") or {}, dict):
            raise PipelineError(f"{path}: {_name(i, exp)}: 'kwargs' and 'meta' must be objects")
        level = (exp.get("meta") or {}).get("level", "row")
        if level not in LEVELS:
            raise PipelineError(f"{path}: {_name(i, exp)}: meta.level must be row or table, not {level!r}")
    return suite


def _parameters_used(value: object) -> list[str]:
    if isinstance(value, dict):
        if set(value) == {"$PARAMETER"}:
            return [str(value["$PARAMETER"])]
        return [name for v in value.values() for name in _parameters_used(v)]
    if isinstance(value, list):
        return [name for v in value for name in _parameters_used(v)]
    return []


def check_suite_against(suite: dict, path: Path | str, columns: list[str], parameters: dict) -> None:
    """Fail on anything in the suite that GX would drop or run as a no-op on this batch."""
    from great_expectations.expectations.expectation import (
        ColumnMapExpectation,
        ColumnPairMapExpectation,
        MulticolumnMapExpectation,
    )
    from great_expectations.expectations.registry import get_expectation_impl

    known = set(columns)
    for i, exp in enumerate(suite["expectations"]):
        try:
            impl = get_expectation_impl(exp["type"])
        except Exception:  # GX raises ExpectationNotFoundError (or others on odd names)
            raise PipelineError(f"{path}: {_name(i, exp)}: unknown expectation type {exp['type']!r}") from None
        meta = exp.get("meta") or {}
        row_level = meta.get("level", "row") == "row" and meta.get("batch", "images") == "images"
        if row_level and not issubclass(impl, (ColumnMapExpectation, ColumnPairMapExpectation,
                                               MulticolumnMapExpectation)):
            # It would fail with no rows to quarantine, and the gate would pass.
            raise PipelineError(f"{path}: {_name(i, exp)}: is row-level (meta.level row, the default) but "
                                f"{exp['type']} checks the whole column and cannot name rows; "
                                "set meta.level to table")
        kwargs = exp.get("kwargs") or {}
        for name in _parameters_used(kwargs):
            if name not in parameters:
                raise PipelineError(
                    f"{path}: {_name(i, exp)}: unknown $PARAMETER {name!r} "
                    f"(the stage provides: {', '.join(sorted(parameters))})"
                )
        named = [kwargs[k] for k in COLUMN_KWARGS if k in kwargs]
        named += [c for k in COLUMN_LIST_KWARGS for c in (kwargs.get(k) or [])]
        for column in named:
            if column not in known:
                raise PipelineError(
                    f"{path}: {_name(i, exp)}: no column {column!r} in the dataset "
                    f"(columns: {', '.join(sorted(known))})"
                )


def run_suite(df: pd.DataFrame, suite: dict, parameters: dict, path: Path | str = "the suite") -> list[ExpectationOutcome]:
    """Run the suite with real Great Expectations on an in-memory DataFrame."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.core import ExpectationSuite
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # Some GX modules pin their own loggers to INFO on import; quiet them all afterwards.
    for name in [n for n in logging.root.manager.loggerDict if n.startswith("great_expectations")]:
        logging.getLogger(name).setLevel(logging.WARNING)
    check_suite_against(suite, path, list(df.columns), parameters)
    context = _context(ProgressBarsConfig)
    run_id = next(_RUNS)  # one context per process (it is slow to make); fresh names per run
    batch = (
        context.data_sources.add_or_update_pandas("imgpipe")
        .add_dataframe_asset(f"dataset-{run_id}")
        .add_batch_definition_whole_dataframe("whole")
    )
    gx_suite = ExpectationSuite(name=f"{suite.get('name', 'suite')}-{run_id}")
    for i, exp in enumerate(suite["expectations"]):
        # One at a time, so a bad expectation is named instead of logged and dropped by GX.
        try:
            gx_suite.add_expectation_configuration(_configuration(exp))
        except Exception as exc:  # GX raises a zoo of types for a bad expectation config
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise PipelineError(f"{path}: {_name(i, exp)}: invalid: {detail}") from None
    gx_suite = context.suites.add(gx_suite)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"validate-{run_id}", data=batch, suite=gx_suite)
    )
    # GX reports failing rows by DataFrame index: make it positional.
    frame = df.reset_index(drop=True)
    result = definition.run(
        batch_parameters={"dataframe": frame},
        expectation_parameters=parameters,
        result_format={"result_format": "COMPLETE"},
    )
    if len(result.results) != len(suite["expectations"]):
        raise PipelineError(f"{path}: {len(suite['expectations'])} expectations, but GX ran "
                            f"{len(result.results)}; check the suite file")
    outcomes = []
    for i, res in enumerate(result.results):
        config = res.expectation_config
        meta = config.meta or {}
        exc_info = res.exception_info or {}
        if exc_info.get("raised_exception"):
            message = str(exc_info.get("exception_message")).strip().splitlines()[0]
            raise PipelineError(f"{path}: {_name(i, suite['expectations'][i])}: raised: {message}")
        outcomes.append(
            ExpectationOutcome(
                type=config.type,
                column=config.kwargs.get("column"),
                level=meta.get("level", "row"),
                reason=meta.get("reason", config.type),
                success=bool(res.success),
                failing_rows=sorted(int(i) for i in (res.result.get("unexpected_index_list") or [])),
                observed=res.result.get("observed_value"),
            )
        )
    return outcomes


_RUNS = itertools.count()


@functools.cache
def _context(progress_bars_config):
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = progress_bars_config(globally=False)
    return context


def _configuration(exp: dict):
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    return ExpectationConfiguration(type=exp["type"], kwargs=exp.get("kwargs") or {}, meta=exp.get("meta") or {})
