"""Request and response models of the model registry (the seed's ``POST /mlops/registry`` and model listings)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from asgard_ray.lineage import UserTags
from asgard_ray.types import ModelName

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
    model_name: ModelName
    run_id: str = Field(min_length=1, max_length=64, examples=["abc123def456"])
    description: str | None = Field(default=None, max_length=5000, examples=["Churn prediction model v1"])
    tags: UserTags = Field(
        default_factory=dict,
        examples=[{"validated": "true"}],
        description="Tags of the new version; `asgard.` tags are lineage, copied from the run, and cannot be set here.",
    )


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
    version: str | int = Field(examples=["1"], description="A version number (a string of digits or an integer).")

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, v: object) -> object:
        text = str(v).strip()
        if isinstance(v, bool) or not text.isdigit() or len(text) > 19 or int(text) > 2**63 - 1:
            raise ValueError("version must be a version number such as 1")
        return v


class AliasResponse(BaseModel):
    """Where an alias points now."""

    model_name: str
    alias: str
    version: str
    run_id: str | None = None
    model_uri: str
