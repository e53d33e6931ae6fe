"""Model registry on MLflow: register runs as versions, list and describe models, aliases, resolve."""

from asgard_ray.registry.schemas import (
    AliasRequest,
    AliasResponse,
    ModelDetail,
    ModelList,
    ModelSummary,
    ModelVersionInfo,
    RegisterModelRequest,
    RegisterModelResponse,
)
from asgard_ray.registry.service import ModelRegistry, ResolvedModel, resolve_model_version

__all__ = [
    "AliasRequest",
    "AliasResponse",
    "ModelDetail",
    "ModelList",
    "ModelRegistry",
    "ModelSummary",
    "ModelVersionInfo",
    "RegisterModelRequest",
    "RegisterModelResponse",
    "ResolvedModel",
    "resolve_model_version",
]
