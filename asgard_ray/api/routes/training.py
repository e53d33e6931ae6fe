"""``/mlops/models`` (train, list, describe) and ``/mlops/jobs/{id}`` (training job status)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, status

from asgard_ray.api.deps import service
from asgard_ray.api.errors import ErrorBody
from asgard_ray.registry import ModelDetail, ModelList, ModelRegistry
from asgard_ray.training.schemas import TrainingJob, TrainRequest, TrainResponse
from asgard_ray.training.service import TrainingService

__all__ = ["RegistryDep", "TrainingDep", "router"]

router = APIRouter(prefix="/mlops", tags=["training"])
_ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}, 422: {"model": ErrorBody}, 503: {"model": ErrorBody}}


def get_training(request: Request) -> TrainingService:
    """The training service of this app."""
    return service(request, "training", TrainingService)  # type: ignore[return-value]


def get_registry(request: Request) -> ModelRegistry:
    """The model registry service of this app."""
    return service(request, "registry", ModelRegistry)  # type: ignore[return-value]


TrainingDep = Annotated[TrainingService, Depends(get_training)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]


@router.post(
    "/models",
    response_model=TrainResponse | TrainingJob,
    responses={202: {"model": TrainingJob, "description": "Async request accepted"}, **_ERRORS},
)
def train_model(body: TrainRequest, training: TrainingDep, response: Response) -> TrainResponse | TrainingJob:
    """Train with Ray Tune trials and track them in MLflow; with `"async": true` answer 202 with a job."""
    result = training.train(body)
    if isinstance(result, TrainingJob):
        response.status_code = status.HTTP_202_ACCEPTED
    return result


@router.get("/models", response_model=ModelList)
def list_models(registry: RegistryDep) -> ModelList:
    """List registered models with their latest version."""
    return registry.list_models()


@router.get("/models/{model_name}", response_model=ModelDetail, responses=_ERRORS)
def get_model(model_name: str, registry: RegistryDep) -> ModelDetail:
    """Describe a registered model: versions, run ids, metrics, tags, aliases, description."""
    return registry.get_model(model_name)


@router.get("/jobs/{job_id}", response_model=TrainingJob, responses=_ERRORS)
def get_job(job_id: str, training: TrainingDep) -> TrainingJob:
    """Status of a job: trials done, best metric so far, error, dashboard and MLflow links."""
    return training.job(job_id)
