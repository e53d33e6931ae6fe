"""Request and response bodies of real-time predictions (``POST /mlops/serve``, ``POST /predict/<model>``).

The request has the batch body's shape for one or a few entities: the model (a version number or
an alias, default ``champion`` if set else the latest version), the feature views, and either
``entities`` (ids looked up in Feast's online store) or ``instances`` (feature values inline).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from asgard_ray.types import Int64, ModelName

__all__ = ["DEFAULT_REF", "PredictRequest", "PredictResponse", "PredictionRow", "model_ref"]

DEFAULT_REF = "@default"
"""The reference a request without ``model_version`` follows: ``champion`` if that alias exists, else the latest."""

EntityId = Int64 | str


def model_ref(value: str | int | None) -> str:
    """Normalise ``model_version``: ``"3"`` for a number, the alias's name, or ``DEFAULT_REF``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return DEFAULT_REF
    if isinstance(value, bool):
        raise ValueError("model_version must be a version number or an alias name, not a boolean")
    if isinstance(value, int):
        if value < 1:
            raise ValueError("model_version numbers start at 1")
        return str(value)
    text = value.strip()
    if text == DEFAULT_REF:
        return text
    if text.lower() == "latest":
        return "latest"
    if text.isdigit():
        return str(int(text))
    if len(text) > 255 or not all(c.isalnum() or c in "_-" for c in text):
        raise ValueError("model_version must be a version number or an alias (letters, digits, '_' or '-')")
    return text


class PredictRequest(BaseModel):
    """One real-time prediction call: a model, and entity ids or inline feature values."""

    model_config = {"protected_namespaces": (), "extra": "forbid"}

    model_name: ModelName
    model_version: str | int | None = Field(
        default=None,
        validate_default=True,
        description="Version number or alias; default the 'champion' alias if it exists, else the latest version.",
    )
    feature_views: list[str] = Field(
        default_factory=list,
        max_length=32,
        description="Feature views to read entities' features from (default: the ones the model was trained on).",
    )
    entities: dict[str, list[EntityId]] | None = Field(
        default=None, description='Join key -> ids, e.g. {"customer_id": [1, 2]}; features come from the online store.'
    )
    instances: list[dict[str, Any]] | None = Field(
        default=None, description='Rows of feature values given inline, e.g. [{"total_orders": 3, ...}].'
    )

    @field_validator("model_version", mode="before")
    @classmethod
    def _ref(cls, v: Any) -> str:
        return model_ref(v)

    @model_validator(mode="after")
    def _one_source(self) -> PredictRequest:
        if (self.entities is None) == (self.instances is None):
            raise ValueError("send exactly one of 'entities' (ids looked up online) or 'instances' (inline features)")
        if self.entities is not None:
            if not self.entities:
                raise ValueError('entities needs at least one join key, e.g. {"customer_id": [1]}')
            lengths = {len(v) for v in self.entities.values()}
            if len(lengths) != 1:
                raise ValueError("every join key in entities needs the same number of ids")
            if lengths == {0}:
                raise ValueError("entities holds no ids")
        if self.instances is not None and not self.instances:
            raise ValueError("instances holds no rows")
        return self

    @property
    def ref(self) -> str:
        """The normalised version reference (see ``model_ref``)."""
        return str(self.model_version)

    @property
    def rows(self) -> int:
        """How many rows this request asks predictions for."""
        if self.instances is not None:
            return len(self.instances)
        return len(next(iter(self.entities.values()))) if self.entities else 0


class PredictionRow(BaseModel):
    """The answer for one entity or instance."""

    model_config = {"protected_namespaces": ()}

    entity: dict[str, Any] | None = None
    prediction: Any
    probabilities: dict[str, float] | None = None
    model_version: str
    features: dict[str, Any]


class PredictResponse(BaseModel):
    """Predictions, the version that answered, and the entities the online store did not have."""

    model_config = {"protected_namespaces": ()}

    model_name: str
    model_version: str
    alias: str | None = None
    predictions: list[PredictionRow]
    missing_entities: list[dict[str, Any]] = Field(default_factory=list)
    latency_ms: float | None = None
