"""``/mlops/models``: train (a job of kind ``training``), list and describe models."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, status

from asgard_ray import jobs
from asgard_ray.api.deps import SettingsDep, service
from asgard_ray.api.errors import ErrorBody
from asgard_ray.registry import ModelDetail, ModelList, ModelRegistry
from asgard_ray.training.schemas import TrainingJob, TrainRequest, TrainResponse
from asgard_ray.training.service import TRAINING_JOB, train_answer

__all__ = ["RegistryDep", "router"]

router = APIRouter(prefix="/mlops", tags=["training"])
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (404, 409, 422, 429, 503)}


async def get_registry(request: Request) -> ModelRegistry:
    """The model registry service of this app."""
    return service(request, "registry", ModelRegistry)  # type: ignore[return-value]


RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]


@router.post(
    "/models",
    response_model=TrainResponse | TrainingJob,
    responses={202: {"model": TrainingJob, "description": "Async request accepted"}, **_ERRORS},
)
async def train_model(body: TrainRequest, settings: SettingsDep, response: Response) -> TrainResponse | TrainingJob:
    """Train with trials on Ray and track them in MLflow; with `"async": true` answer 202 with a job."""
    answer = train_answer(await jobs.submit_job(TRAINING_JOB, body, settings))
    if isinstance(answer, TrainingJob):
        response.status_code = status.HTTP_202_ACCEPTED
    return answer


@router.get("/models", response_model=ModelList)
async def list_models(registry: RegistryDep) -> ModelList:
    """List registered models with their latest version."""
    return await asyncio.to_thread(registry.list_models)


@router.get("/models/{model_name}", response_model=ModelDetail, responses=_ERRORS)
async def get_model(model_name: str, registry: RegistryDep) -> ModelDetail:
    """Describe a registered model: versions, run ids, metrics, tags, aliases, description."""
    return await asyncio.to_thread(registry.get_model, model_name)
