"""The one rule for a training target: a column of a source table that is not a model input or a key.

A model must never see its own label, and a target that is a join key or a timestamp is a mistake,
not a model. So, before any job starts (in the training kind's ``prepare``, for every mode and the
fast path), the target column is checked against the roles the requested views give their tables'
columns, and its type against ``model_type``. What only the data can tell (how many classes, a
float label with fractions) is checked where the training set is built, before any MLflow run
exists (``data.prepare_data`` and ``dataset.build_training_dataset``, through ``check_classes``).
Where the feature matrix is built, ``check_inputs`` asserts again that no key, timestamp or label
is among its columns, on every path.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from asgard_ray.errors import InvalidRequest

if TYPE_CHECKING:
    from asgard_ray.features.retrieval import ViewRead

__all__ = ["ENTITY_TIMESTAMP", "check_classes", "check_inputs", "check_target"]

ENTITY_TIMESTAMP = "event_timestamp"
"""The entity rows' timestamp column (the seed's name; never a feature or a label)."""


def _roles(reads: Sequence[ViewRead]) -> dict[str, str]:
    """Each column that cannot be a target, with why (the first reason found wins)."""
    roles: dict[str, str] = {ENTITY_TIMESTAMP: "the entity rows' event timestamp"}
    for read in reads:
        for key in read.join_keys:
            roles.setdefault(key, f"a join key of view {read.view}")
        roles.setdefault(read.timestamp_field, f"the event timestamp of view {read.view}")
        if read.created_column:
            roles.setdefault(read.created_column, f"the created timestamp of view {read.view}")
    for read in reads:
        for feature in read.columns:
            roles[feature] = f"a feature of view {read.view}; a model cannot be trained on its own label"
    return roles


def _type_problem(dtype: pa.DataType, model_type: str) -> str | None:
    if pa.types.is_timestamp(dtype) or pa.types.is_date(dtype) or pa.types.is_time(dtype) or pa.types.is_duration(dtype):
        return "is a time column"
    if pa.types.is_nested(dtype) or pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype):
        return f"has type {dtype}, which is not a label"
    numeric = pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype)
    if model_type == "regression" and not numeric:
        return f"has type {dtype}; regression needs a numeric target (use model_type classification for classes)"
    return None


def check_target(target: str, model_type: str, reads: Sequence[ViewRead]) -> str:
    """Check ``target`` against the requested views' columns; return the view whose table holds it.

    Raises:
        InvalidRequest: The target is a join key, a timestamp or a feature of a requested view, is in
            none of their source tables, or has a type ``model_type`` cannot learn (422, naming the rule).
    """
    why = _roles(reads).get(target)
    if why is not None:
        raise InvalidRequest(
            f"target_column {target!r} is {why}; choose a label column of the source table that is not a key, "
            "a timestamp or a feature of the requested views",
            detail={"target_column": target, "rule": "target is not a key, timestamp or feature"},
        )
    for read in reads:
        schema = read.table.schema if read.table is not None else None
        if schema is None or target not in schema.names:
            continue
        problem = _type_problem(schema.field(target).type, model_type)
        if problem:
            raise InvalidRequest(
                f"target_column {target!r} {problem}",
                detail={"target_column": target, "model_type": model_type, "type": str(schema.field(target).type)},
            )
        return read.view
    tables = ", ".join(sorted({r.table_name for r in reads}))
    raise InvalidRequest(
        f"target_column {target!r} is not a column of the source table(s) {tables} of the requested views",
        detail={"target_column": target, "tables": sorted({r.table_name for r in reads})},
    )


def check_inputs(feature_columns: Iterable[str], forbidden: Iterable[str | None]) -> None:
    """Assert that no join key, timestamp or label is among a model's input columns.

    Raises:
        InvalidRequest: One is (the request should have been refused earlier; this is the last guard).
    """
    leaked = sorted(set(feature_columns) & {c for c in forbidden if c})
    if leaked:
        raise InvalidRequest(
            f"column(s) {', '.join(leaked)} would be model inputs, but are keys, timestamps or the label",
            detail={"columns": leaked, "rule": "no key, timestamp or label is a model input"},
        )


def check_classes(label: str, classes: Sequence[Any], max_classes: int) -> None:
    """Refuse a classification label with more than ``max_classes`` classes, or fractional numbers.

    Raises:
        InvalidRequest: Too many classes (ASGARD_MAX_CLASSES), or a float label with fractions.
    """
    if len(classes) > max_classes:
        raise InvalidRequest(
            f"target_column {label!r} has {len(classes):,} distinct values, over the limit of {max_classes:,} classes "
            "(setting ASGARD_MAX_CLASSES); use model_type regression for a continuous target",
            detail={"target_column": label, "classes": len(classes), "max_classes": max_classes},
        )
    fractional = [c for c in classes if isinstance(c, float) and not float(c).is_integer()]
    if fractional:
        raise InvalidRequest(
            f"target_column {label!r} holds fractional values such as {fractional[0]!r}; classification needs classes "
            "(integers, strings or booleans); use model_type regression",
            detail={"target_column": label},
        )
