"""Request and response bodies of ``/mlops/monitoring`` (the seed's shapes, with stricter validation)."""

from __future__ import annotations

import math
import re
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, PrivateAttr, field_validator, model_validator

from asgard_ray.types import ModelName, check_bounded_json, check_model_name, check_utc_datetime

__all__ = [
    "ALLOWED_METRIC_TYPES",
    "BoundedData",
    "BoundedTags",
    "ComputeRequest",
    "HistoryRequest",
    "HistoryResponse",
    "HistorySummary",
    "MetricType",
    "MonitoringRecord",
    "MonitoringRequest",
    "MonitoringResponse",
    "check_version",
    "format_ts",
    "new_monitoring_id",
    "parse_ts",
]

_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")
MAX_METRICS = 2000
MAX_TAGS = 100
"""Most tags on one record."""
MAX_TAG_CHARS = 1000
"""Longest tag key or value."""


def _bounded_dict(value: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if value is None else check_bounded_json(value, "the value")


def _bounded_tags(value: dict[str, str] | None) -> dict[str, str] | None:
    if value is None:
        return None
    if len(value) > MAX_TAGS:
        raise ValueError(f"holds {len(value)} tags; send at most {MAX_TAGS}")
    for key, text in value.items():
        if not key or len(key) > MAX_TAG_CHARS or len(text) > MAX_TAG_CHARS:
            raise ValueError(f"tag {key[:40]!r}: keys must be non-empty and keys and values at most {MAX_TAG_CHARS} characters")
    return value


BoundedData = Annotated[dict[str, Any] | None, AfterValidator(_bounded_dict)]
"""``reference_data`` / ``current_data``: a JSON object within the shared depth, key-count and size limits."""
BoundedTags = Annotated[dict[str, str] | None, AfterValidator(_bounded_tags)]
"""``tags``: at most ``MAX_TAGS`` string pairs of bounded length."""


class MetricType(StrEnum):
    """What a monitoring record measures (the seed's five types)."""

    PREDICTION_DRIFT = "prediction_drift"
    FEATURE_DRIFT = "feature_drift"
    DATA_QUALITY = "data_quality"
    MODEL_PERFORMANCE = "model_performance"
    CUSTOM = "custom"


ALLOWED_METRIC_TYPES = [m.value for m in MetricType]


def new_monitoring_id() -> str:
    """A fresh record id such as ``mon-3f2a9c1b7d4e5f60``."""
    return f"mon-{uuid.uuid4().hex[:16]}"


def parse_ts(value: str | datetime | None, what: str = "timestamp") -> datetime | None:
    """Parse an ISO-8601 time with ``Z`` or an offset; a naive time is taken as UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        ts = value
    elif not isinstance(value, str):
        # a bare number would be read as seconds since the epoch; callers mean a calendar time
        raise ValueError(f"{what} must be an ISO-8601 time such as 2025-10-17T23:59:59Z, not {type(value).__name__} {value!r}")
    else:
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            ts = datetime.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(
                f"{what} {value!r} is not an ISO-8601 time; write e.g. 2025-10-17T23:59:59Z or 2025-10-17T23:59:59+02:00"
            ) from exc
    try:
        return check_utc_datetime(ts)
    except ValueError as exc:
        raise ValueError(f"{what} {value!s}: {exc}") from None


def format_ts(ts: datetime) -> str:
    """Format a time as UTC ISO-8601 with microseconds and a ``Z`` (fixed width, so text order is time order)."""
    return ts.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def check_version(value: str, what: str = "model_version") -> str:
    """Return a model version unchanged if it is safe in S3 keys and MLflow filters, else raise ValueError."""
    if not _VERSION.match(value):
        raise ValueError(f"{what} {value!r} must be 1-128 letters, digits, '_', '.' or '-', starting with a letter or digit")
    return value


class MonitoringRequest(BaseModel):
    """``POST /mlops/monitoring``: one set of metrics for a model version."""

    model_config = {"protected_namespaces": ()}

    model_name: ModelName
    model_version: str = Field(description="Model version (a number as text, e.g. '1').")
    metric_type: str = Field(description=f"One of {', '.join(ALLOWED_METRIC_TYPES)}.")
    metrics: dict[str, Any] = Field(description="Metric name -> finite number; at least one.")
    reference_data: BoundedData = Field(default=None, description="Free-form JSON (at most 32 levels deep, 10,000 keys, 1 MiB).")
    current_data: BoundedData = Field(default=None, description="Free-form JSON (same limits as reference_data).")
    tags: BoundedTags = Field(default=None, description=f"String tags (at most {MAX_TAGS}).")
    monitoring_id: str | None = Field(
        default=None, description="Optional client-chosen id; a retry with the same id returns the stored record."
    )

    @field_validator("model_version", mode="before")
    @classmethod
    def _version(cls, v: Any) -> str:
        if isinstance(v, bool) or not isinstance(v, str | int):
            raise ValueError("model_version must be a version number such as '1'")
        return check_version(str(v))

    @field_validator("metric_type")
    @classmethod
    def _type(cls, v: str) -> str:
        if v not in ALLOWED_METRIC_TYPES:
            raise ValueError(f"unknown metric_type {v!r}; allowed types are {', '.join(ALLOWED_METRIC_TYPES)}")
        return v

    @field_validator("metrics", mode="before")
    @classmethod
    def _metrics(cls, v: Any) -> dict[str, float]:
        if not isinstance(v, dict) or not v:
            raise ValueError("metrics is empty; send at least one metric name with a numeric value")
        if len(v) > MAX_METRICS:
            raise ValueError(f"metrics holds {len(v)} entries; send at most {MAX_METRICS} per record")
        out: dict[str, float] = {}
        for name, value in v.items():
            if not isinstance(name, str) or not name.strip() or len(name) > 250:
                raise ValueError(f"metric name {name!r} must be non-empty text of at most 250 characters")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"metric {name!r} has non-numeric value {value!r}; send a number")
            if not math.isfinite(value):
                raise ValueError(f"metric {name!r} is {value}; send a finite number")
            out[name] = float(value)
        return out

    @field_validator("monitoring_id")
    @classmethod
    def _id(cls, v: str | None) -> str | None:
        if v is not None and not _ID.match(v):
            raise ValueError("monitoring_id must be 1-64 letters, digits, '_' or '-'")
        return v


class MonitoringResponse(BaseModel):
    """The seed's response to ``POST /mlops/monitoring``."""

    model_config = {"protected_namespaces": ()}

    monitoring_id: str
    model_name: str
    model_version: str
    metric_type: str
    metrics: dict[str, float]
    alert_triggered: bool
    alerts: list[str]
    timestamp: str

    @classmethod
    def of(cls, record: MonitoringResponse) -> MonitoringResponse:
        """The response for a stored record."""
        return cls.model_validate(record.model_dump(include=set(cls.model_fields)))


class MonitoringRecord(MonitoringResponse):
    """A stored record: the response fields plus the data the client sent with it."""

    reference_data: BoundedData = None
    current_data: BoundedData = None
    tags: BoundedTags = None
    _size: int = PrivateAttr(default=0)  # serialized bytes, when known (memory accounting)

    @property
    def size(self) -> int:
        """Serialized size in bytes (measured once)."""
        if not self._size:
            self._size = len(self.model_dump_json())
        return self._size

    @field_validator("model_name")
    @classmethod
    def _stored_name(cls, v: str) -> str:
        return check_model_name(v)

    @field_validator("metrics")
    @classmethod
    def _finite(cls, v: dict[str, float]) -> dict[str, float]:
        if not all(math.isfinite(x) for x in v.values()):
            raise ValueError("a stored metric is NaN or Infinity")
        return v

    @property
    def ts(self) -> datetime:
        """The record's time as an aware datetime."""
        return parse_ts(self.timestamp)  # type: ignore[return-value]


class HistoryRequest(BaseModel):
    """``POST /mlops/monitoring/history`` (and the GET form's query parameters)."""

    model_config = {"protected_namespaces": ()}

    model_name: ModelName
    model_version: str | None = None
    metric_type: str | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None
    limit: int = Field(default=100, ge=1, le=10_000)
    offset: int = Field(default=0, ge=0)
    alerts_only: bool = False

    @field_validator("model_version", mode="before")
    @classmethod
    def _version(cls, v: Any) -> str | None:
        return None if v is None or v == "" else str(v)

    @field_validator("metric_type")
    @classmethod
    def _type(cls, v: str | None) -> str | None:
        if v is not None and v not in ALLOWED_METRIC_TYPES:
            raise ValueError(f"unknown metric_type {v!r}; allowed types are {', '.join(ALLOWED_METRIC_TYPES)}")
        return v

    @field_validator("start_date", "end_date", mode="before")
    @classmethod
    def _dates(cls, v: Any) -> datetime | None:
        return parse_ts(v, "date")

    @model_validator(mode="after")
    def _range(self) -> HistoryRequest:
        if self.start_date and self.end_date and self.start_date > self.end_date:
            raise ValueError("start_date is after end_date; swap them")
        return self


class HistorySummary(BaseModel):
    """Totals over every record that matched (not only the returned page)."""

    total_alerts: int
    metric_types: list[str]
    date_range: dict[str, str | None]


class HistoryResponse(BaseModel):
    """The seed's history response, plus paging fields."""

    model_config = {"protected_namespaces": ()}

    model_name: str
    model_version: str | None
    total_records: int
    records: list[MonitoringRecord]
    summary: HistorySummary
    limit: int
    offset: int
    has_more: bool


class ComputeRequest(BaseModel):
    """``POST /mlops/monitoring/compute``: drift of a batch scoring output against the training reference."""

    job_id: str | None = Field(default=None, description="A batch scoring job id (its manifest gives the output path).")
    output_path: str | None = Field(default=None, description="Or the scoring output folder holding _manifest.json.")
    label_table: str | None = Field(default=None, description="Gold table with labels; default: the feature view's source.")
    label_column: str | None = Field(default=None, description="Label column; default: the training run's label.")
    sample_size: int = Field(default=20_000, ge=100, le=1_000_000)
    log_report: bool = Field(default=True, description="Log the drift report (PNG + JSON) to the MLflow monitoring run.")
    wait_s: float = Field(default=0, ge=0, le=600, description="Wait up to this long for the result (0: answer 202 at once).")

    @model_validator(mode="after")
    def _one(self) -> ComputeRequest:
        if bool(self.job_id) == bool(self.output_path):
            raise ValueError("give exactly one of job_id (a batch scoring job) or output_path (its output folder)")
        return self
