"""One type per concept, shared by every capability: model names, bounded JSON, finite numbers, ids.

Each is a pydantic ``Annotated`` type, so a request body that uses it is checked at the edge and a
bad value becomes a 422 that names the field and says what to fix. Registry, scoring, monitoring and
training all use the same ``ModelName``, so a name one accepts is never refused by another.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from pydantic import AfterValidator, BeforeValidator, Field

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "JSON_MAX_BYTES",
    "JSON_MAX_DEPTH",
    "JSON_MAX_KEYS",
    "BoundedJson",
    "FiniteFloat",
    "Int64",
    "JobId",
    "ModelName",
    "UtcDatetime",
    "check_bounded_json",
    "check_model_name",
    "check_utc_datetime",
    "is_job_id",
]

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1

JSON_MAX_DEPTH: Final = 32
"""Deepest nesting accepted in free-form JSON (``reference_data``, ``tags``, ``metadata``, ...)."""
JSON_MAX_KEYS: Final = 10_000
"""Most keys and list items, counted over the whole value."""
JSON_MAX_BYTES: Final = 1024 * 1024
"""Largest serialized size of one free-form value."""

_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def check_model_name(value: str, what: str = "model_name") -> str:
    """Return ``value`` if it is a safe model name (S3 keys, MLflow filters, URLs), else raise ValueError."""
    if not isinstance(value, str) or not _MODEL_NAME.match(value) or ".." in value:
        raise ValueError(
            f"{what} {value!r} must be 1-128 letters, digits, '_', '.' or '-', start with a letter or digit, and contain no '..'"
        )
    return value


ModelName = Annotated[str, AfterValidator(check_model_name), Field(examples=["churn_predictor"])]
"""A registered model's name: the one rule used by registry, training, scoring and monitoring."""


_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")

JobId = Annotated[str, Field(pattern=_JOB_ID.pattern, examples=["batch-3f2a9c1b7d4e"])]
"""A job id: letters, digits, '-' and '_' (safe in S3 keys, Ray task names and URLs)."""


def is_job_id(value: str) -> bool:
    """Whether ``value`` is a well-formed job id."""
    return bool(_JOB_ID.match(value))


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number (NaN and Infinity are not accepted)")
    return value


FiniteFloat = Annotated[float, AfterValidator(_finite)]
"""A float that is neither NaN nor +-Infinity."""

Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX, strict=False)]
"""An integer that fits a signed 64-bit column (ids, counts, seeds)."""


def check_bounded_json(
    value: Any,
    what: str = "value",
    *,
    max_depth: int = JSON_MAX_DEPTH,
    max_keys: int = JSON_MAX_KEYS,
    max_bytes: int = JSON_MAX_BYTES,
) -> Any:
    """Return ``value`` if it is JSON within the depth, key-count and size limits, else raise ValueError.

    The walk is iterative, so a hostile depth cannot exhaust the interpreter's stack here; the
    depth limit keeps every later reader (``json``, pydantic, Arrow) safe too.
    """
    count = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                raise ValueError(f"{what} nests deeper than {max_depth} levels; flatten it")
            count += len(item)
            if count > max_keys:
                raise ValueError(f"{what} has more than {max_keys} keys and items in all; send a summary instead")
            children = item.values() if isinstance(item, dict) else item
            if isinstance(item, dict) and not all(isinstance(k, str) for k in item):
                raise ValueError(f"{what} must have string keys")
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"{what} holds NaN or Infinity, which JSON cannot carry")
        elif not (item is None or isinstance(item, str | int | float | bool)):
            raise ValueError(f"{what} holds a {type(item).__name__}, which is not JSON")
    size = len(json.dumps(value, allow_nan=False, separators=(",", ":")))
    if size > max_bytes:
        raise ValueError(f"{what} is {size} bytes serialized, over the {max_bytes}-byte limit")
    return value


BoundedJson = Annotated[Any, AfterValidator(check_bounded_json)]
"""Free-form JSON bounded in depth, key count and size."""


def check_utc_datetime(value: datetime) -> datetime:
    """Return ``value`` in UTC if Python and Arrow (``timestamp[us]``) can hold it, else raise ValueError."""
    try:
        ts = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        ts.timestamp()
    except (OverflowError, ValueError, OSError) as exc:
        raise ValueError("date is outside the range that can be stored; use a year between 1 and 9998") from exc
    return ts


def _reject_non_datetime(value: Any) -> Any:
    # pydantic would read a bare number as seconds since the epoch; callers mean a calendar time
    if isinstance(value, bool | int | float):
        raise ValueError("must be an ISO-8601 time such as 2025-10-17T00:00:00Z, not a number")
    return value


UtcDatetime = Annotated[datetime, BeforeValidator(_reject_non_datetime), AfterValidator(check_utc_datetime)]
"""An ISO-8601 time with ``Z`` or an offset (naive means UTC), normalised to UTC and range-checked."""
