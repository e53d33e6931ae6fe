"""Request and response models of the feature store (the seed's ``POST /feast/features`` body).

Also the one check of inline entity rows (``check_entity_columns``), shared by training's
``data_source.entities`` and scoring's ``entities_df``: ids must fit an int64 column or be short
strings, and ``event_timestamp`` values must be times that Python and Arrow can hold, so a hostile
id or date is a 422 at the edge instead of an overflow deep inside pandas or Arrow.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from asgard_ray.lineage import UserTags
from asgard_ray.types import INT64_MAX, INT64_MIN, UtcDatetime

__all__ = [
    "DTYPES",
    "EVENT_TIMESTAMP_KEY",
    "MAX_ENTITY_ID_CHARS",
    "MAX_TTL_SECONDS",
    "SEED_EXAMPLE",
    "EntityColumns",
    "FeastStatus",
    "FeatureField",
    "FeatureSourceSpec",
    "FeatureViewInfo",
    "FeatureViewList",
    "FeatureViewSpec",
    "RegisterFeaturesResponse",
    "check_entity_columns",
    "check_event_times",
]

Dtype = Literal["int64", "int32", "float64", "float32", "string", "bool", "bytes", "unix_timestamp"]
DTYPES: tuple[str, ...] = Dtype.__args__  # type: ignore[attr-defined]
_ALIASES = {
    "int": "int64",
    "integer": "int64",
    "float": "float64",
    "double": "float64",
    "str": "string",
    "boolean": "bool",
    "timestamp": "unix_timestamp",
}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


MAX_TTL_SECONDS: Final = 100 * 366 * 86_400
"""Longest feature view TTL (about 100 years): far inside what ``timedelta`` and Feast's protobuf hold."""
MAX_ENTITY_ID_CHARS: Final = 256
"""Longest string entity id."""
EVENT_TIMESTAMP_KEY: Final = "event_timestamp"
"""The optional per-row as-of time among inline entity columns."""
_MAX_ENTITY_KEYS = 64
_TIME = TypeAdapter(UtcDatetime)


def check_event_times(values: list[Any], what: str = "event_timestamp") -> list[Any]:
    """Return ``values`` if each is an ISO-8601 time that Python and Arrow can hold, else raise ValueError."""
    for i, value in enumerate(values):
        if not isinstance(value, str | datetime):
            raise ValueError(f"{what}[{i}] must be an ISO-8601 time such as 2025-10-17T00:00:00Z, not {type(value).__name__}")
        try:
            _TIME.validate_python(value)
        except ValueError as exc:
            reason = exc.errors()[0]["msg"] if hasattr(exc, "errors") else str(exc)
            raise ValueError(f"{what}[{i}] {str(value)[:64]!r} is not a usable time: {reason}") from None
    return values


def check_entity_columns(columns: dict[str, list[Any]], what: str = "entities") -> dict[str, list[Any]]:
    """Return inline entity columns if every id fits int64 or is a short string, else raise ValueError.

    ``event_timestamp`` (when present) must hold ISO-8601 times in range. Nulls, booleans and floats
    are refused later, with the join keys known (``build_entity_df``); this check guards the ranges.
    """
    if len(columns) > _MAX_ENTITY_KEYS:
        raise ValueError(f"{what} has {len(columns)} columns; at most {_MAX_ENTITY_KEYS} are accepted")
    for key, values in columns.items():
        if not _NAME.match(key) or len(key) > 128:
            raise ValueError(f"{what} key {key[:64]!r} must be a column name (letters, digits and _)")
        if key == EVENT_TIMESTAMP_KEY:
            check_event_times(values, f"{what}.{key}")
            continue
        for i, value in enumerate(values):
            if isinstance(value, bool):
                raise ValueError(f"{what}.{key}[{i}] is a boolean; ids are integers or strings")
            if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
                raise ValueError(f"{what}.{key}[{i}] = {value} does not fit a signed 64-bit integer id")
            if isinstance(value, float):
                raise ValueError(f"{what}.{key}[{i}] = {value!r} is a float; ids are integers or strings")
            if isinstance(value, str) and len(value) > MAX_ENTITY_ID_CHARS:
                raise ValueError(f"{what}.{key}[{i}] is longer than {MAX_ENTITY_ID_CHARS} characters")
    return columns


EntityColumns = Annotated[dict[str, list[Any]], AfterValidator(check_entity_columns)]
"""Inline entity rows ``{join_key: [ids...]}`` (optionally ``event_timestamp``), range-checked."""


def _check_name(value: str, what: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"{what} {value!r} must start with a letter or _ and hold only letters, digits and _")
    if value.startswith("__"):
        raise ValueError(f"{what} {value!r} may not start with '__' (reserved)")
    return value


class FeatureField(BaseModel):
    """One feature: a column of the source table and its type."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="Column of the source table.", examples=["total_orders"])
    dtype: str = Field(description=f"One of {', '.join(DTYPES)}.", examples=["int64"])
    description: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "feature name")

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, v: str) -> str:
        key = _ALIASES.get(v.strip().lower(), v.strip().lower())
        if key not in DTYPES:
            raise ValueError(f"unknown dtype {v!r}; use one of {', '.join(DTYPES)}")
        return key


class FeatureSourceSpec(BaseModel):
    """Where the features come from: a gold-layer table and its event-time column."""

    model_config = ConfigDict(extra="forbid")
    table_name: str = Field(description="Gold-layer table name (resolved under GOLD_SCHEMA).", examples=["customer_aggregates"])
    timestamp_field: str = Field(default="event_timestamp", description="Event-time column of the table.")
    created_timestamp_column: str | None = None
    format: Literal["iceberg", "parquet"] | None = Field(
        default=None,
        description="How the table is stored: an Iceberg table in the gold catalog, or a Parquet folder under "
        "s3://<bucket>/<GOLD_SCHEMA>/<table>/. Default: iceberg when the catalog has the table, else parquet.",
    )

    @field_validator("table_name", "timestamp_field")
    @classmethod
    def _names(cls, v: str) -> str:
        return _check_name(v, "name")


SEED_EXAMPLE: dict = {
    "name": "customer_features",
    "entities": ["customer_id"],
    "features": [
        {"name": "total_orders", "dtype": "int64"},
        {"name": "avg_order_value", "dtype": "float64"},
        {"name": "days_since_last_order", "dtype": "int64"},
    ],
    "source": {"table_name": "customer_aggregates", "timestamp_field": "event_timestamp"},
}
"""The seed guide's step 1 body (Swagger example, demo and tests)."""


class FeatureViewSpec(BaseModel):
    """The seed's ``POST /feast/features`` body."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": SEED_EXAMPLE})
    name: str = Field(description="Feature view name.")
    entities: list[str] = Field(min_length=1, description="Join keys (entity columns of the table).")
    features: list[FeatureField] = Field(min_length=1, description="Feature columns with their types.")
    source: FeatureSourceSpec
    ttl_seconds: int | None = Field(
        default=None,
        ge=1,
        le=MAX_TTL_SECONDS,
        description="How far back a feature value stays valid, at most about 100 years; none = forever.",
    )
    description: str = Field(default="", max_length=10_000)
    tags: UserTags = Field(default_factory=dict, description="User tags (the `asgard.` prefix is reserved).")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "feature view name")

    @field_validator("entities")
    @classmethod
    def _entities(cls, v: list[str]) -> list[str]:
        for e in v:
            _check_name(e, "entity")
        if len(set(v)) != len(v):
            raise ValueError("entities must not repeat")
        return v

    @model_validator(mode="after")
    def _distinct(self) -> FeatureViewSpec:
        names = [f.name for f in self.features]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"features repeat: {', '.join(dup)}")
        clash = sorted(set(names) & (set(self.entities) | {self.source.timestamp_field}))
        if clash:
            raise ValueError(f"{', '.join(clash)} is an entity or the timestamp field, not a feature")
        return self

    def canonical(self) -> str:
        """A stable JSON form, stored with the view to tell an identical re-registration from a conflict."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


class FeatureViewInfo(BaseModel):
    """A registered feature view."""

    name: str
    entities: list[str]
    features: list[FeatureField]
    source: FeatureSourceSpec
    source_uri: str
    ttl_seconds: int | None = None
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    last_materialized_at: datetime | None = None
    """End of the latest interval loaded into the online store (``POST /feast/materialize``); None: never."""


class RegisterFeaturesResponse(FeatureViewInfo):
    """Result of ``POST /feast/features``."""

    status: Literal["registered", "unchanged"]
    registry_version: str | None = None


class FeatureViewList(BaseModel):
    """Result of ``GET /feast/features``."""

    feature_views: list[FeatureViewInfo]
    total: int


class FeastStatus(BaseModel):
    """Result of ``GET /feast/status``."""

    project: str
    registry: str
    registry_version: str | None
    offline_store: str
    """What serves offline reads: the platform's as-of join on Ray over pinned Iceberg snapshots (not Feast's)."""
    online_store: str
    feature_views: int
    entities: int
    healthy: bool
    error: str | None = None
    catalog: dict | None = None
    """The gold catalog (``asgard_ray.gold.catalog_status``): type, name, namespace, warehouse, tables, health; no secret."""
