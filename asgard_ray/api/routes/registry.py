"""``/mlops/registry``: register a run's model as a version; manage aliases such as ``champion``."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Response, status

from asgard_ray.api.errors import ErrorBody
from asgard_ray.api.routes.training import RegistryDep
from asgard_ray.registry import AliasRequest, AliasResponse, RegisterModelRequest, RegisterModelResponse

__all__ = ["router"]

router = APIRouter(prefix="/mlops/registry", tags=["registry"])
_ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}, 422: {"model": ErrorBody}}


@router.post(
    "",
    response_model=RegisterModelResponse,
    status_code=201,
    responses={
        200: {"model": RegisterModelResponse, "description": "The run was registered already"},
        503: {"model": ErrorBody, "description": "Another registration of the same run held its lease too long; retry"},
        **_ERRORS,
    },
)
async def register_model(body: RegisterModelRequest, registry: RegistryDep, response: Response) -> RegisterModelResponse:
    """Register a finished run's model as a new version (201); the same run again returns its version (200)."""
    result = await asyncio.to_thread(registry.register, body)
    if result.status == "already_registered":
        response.status_code = status.HTTP_200_OK
    return result


@router.put("/{model_name}/aliases/{alias}", response_model=AliasResponse, responses=_ERRORS)
async def set_alias(model_name: str, alias: str, body: AliasRequest, registry: RegistryDep) -> AliasResponse:
    """Point an alias (e.g. `champion`) at a version, so scoring can target `models:/<name>@<alias>`."""
    return await asyncio.to_thread(registry.set_alias, model_name, alias, body.version)


@router.delete("/{model_name}/aliases/{alias}", response_model=AliasResponse, responses=_ERRORS)
async def delete_alias(model_name: str, alias: str, registry: RegistryDep) -> AliasResponse:
    """Remove an alias; answers where it pointed."""
    return await asyncio.to_thread(registry.delete_alias, model_name, alias)
