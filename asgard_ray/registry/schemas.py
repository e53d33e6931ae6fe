"""Request and response models of the model registry (the seed's ``POST /mlops/registry`` and model listings)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AliasRequest",
    "AliasResponse",
    "ModelDetail",
    "ModelList",
    "ModelSummary",
    "ModelVersionInfo",
    "RegisterModelRequest",
    "RegisterModelResponse",
]


class RegisterModelRequest(BaseModel):
    """Register a finished training run's model as a new version (the seed's body)."""

    model_config = ConfigDict(extra="forbid")
    model_name: str = Field(min_length=1, max_length=256, examples=["churn_predictor"])
    run_id: str = Field(min_length=1, examples=["abc123def456"])
    description: str | None = Field(default=None, examples=["Churn prediction model v1"])
    tags: dict[str, str] = Field(default_factory=dict, examples=[{"validated": "true"}])


class RegisterModelResponse(BaseModel):
    """The seed's answer; ``status`` is ``already_registered`` when the run had a version already."""

    model_name: str
    version: str
    run_id: str
    status: Literal["registered", "already_registered"] = "registered"
    model_uri: str = Field(description="`models:/<name>/<version>`.")
    source: str | None = None


class ModelVersionInfo(BaseModel):
    """One version of a registered model."""

    version: str
    run_id: str | None
    status: str
    description: str | None = None
    source: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    aliases: list[str] = Field(default_factory=list)
    metrics: dict[str, float] = Field(default_factory=dict)
    created_at: datetime | None = None


class ModelSummary(BaseModel):
    """A registered model and its latest version."""

    name: str
    description: str | None = None
    latest_version: str | None = None
    latest_run_id: str | None = None
    aliases: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


class ModelList(BaseModel):
    """Every registered model."""

    models: list[ModelSummary]
    total: int


class ModelDetail(ModelSummary):
    """A registered model with all its versions, newest first."""

    versions: list[ModelVersionInfo] = Field(default_factory=list)


class AliasRequest(BaseModel):
    """Point an alias (e.g. ``champion``) at a version."""

    model_config = ConfigDict(extra="forbid")
    version: str | int = Field(examples=["1"])


class AliasResponse(BaseModel):
    """Where an alias points now."""

    model_name: str
    alias: str
    version: str
    run_id: str | None = None
    model_uri: str
