"""Request and response models of the feature store (the seed's ``POST /feast/features`` body)."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "DTYPES",
    "SEED_EXAMPLE",
    "FeatureField",
    "FeatureSourceSpec",
    "FeatureViewSpec",
    "FeatureViewInfo",
    "FeatureViewList",
    "RegisterFeaturesResponse",
    "FeastStatus",
]

Dtype = Literal["int64", "int32", "float64", "float32", "string", "bool", "bytes", "unix_timestamp"]
DTYPES: tuple[str, ...] = Dtype.__args__  # type: ignore[attr-defined]
_ALIASES = {"int": "int64", "integer": "int64", "float": "float64", "double": "float64", "str": "string", "boolean": "bool", "timestamp": "unix_timestamp"}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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
    ttl_seconds: int | None = Field(default=None, ge=1, description="How far back a feature value stays valid; none = forever.")
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict)

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
    online_store: str
    feature_views: int
    entities: int
    healthy: bool
    error: str | None = None
