"""``/feast/*``: register, list, get and delete feature views; store status."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Response, status

from asgard_ray.api.deps import FeaturesDep
from asgard_ray.api.errors import ErrorBody
from asgard_ray.features.specs import (
    FeastStatus,
    FeatureViewInfo,
    FeatureViewList,
    FeatureViewSpec,
    RegisterFeaturesResponse,
)

router = APIRouter(prefix="/feast", tags=["features"])
_ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}, 409: {"model": ErrorBody}, 422: {"model": ErrorBody}}


@router.post(
    "/features", response_model=RegisterFeaturesResponse, status_code=201, responses={200: {"model": RegisterFeaturesResponse}, **_ERRORS}
)
async def register_features(body: FeatureViewSpec, features: FeaturesDep, response: Response) -> RegisterFeaturesResponse:
    """Register a feature view over a gold table (201); an identical re-registration answers 200."""
    result = await asyncio.to_thread(features.register, body)
    if result.status == "unchanged":
        response.status_code = status.HTTP_200_OK
    return result


@router.get("/features", response_model=FeatureViewList)
async def list_features(features: FeaturesDep) -> FeatureViewList:
    """List the registered feature views."""
    return await asyncio.to_thread(features.list)


@router.get("/features/{name}", response_model=FeatureViewInfo, responses=_ERRORS)
async def get_features(name: str, features: FeaturesDep) -> FeatureViewInfo:
    """Describe one feature view."""
    return await asyncio.to_thread(features.get, name)


@router.delete("/features/{name}", response_model=FeatureViewInfo, responses=_ERRORS)
async def delete_features(name: str, features: FeaturesDep) -> FeatureViewInfo:
    """Delete a feature view; returns what was deleted."""
    return await asyncio.to_thread(features.delete, name)


@router.get("/status", response_model=FeastStatus)
async def feast_status(features: FeaturesDep) -> FeastStatus:
    """Registry, offline and online store, and counts."""
    return await asyncio.to_thread(features.status)
