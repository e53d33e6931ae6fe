"""``/mlops/serve/batch``: submit batch-scoring jobs, follow them, list them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from asgard_ray import jobs
from asgard_ray.api.deps import SettingsDep
from asgard_ray.api.errors import ErrorBody
from asgard_ray.api.routes.jobs import answer_status
from asgard_ray.scoring import (
    BatchJobList,
    BatchJobStatus,
    BatchScoreRequest,
    BatchScoreResponse,
)
from asgard_ray.scoring.service import KIND, SCORING_JOB, batch_response, batch_status
from asgard_ray.types import JobId

__all__ = ["router"]

router = APIRouter(prefix="/mlops/serve", tags=["batch scoring"])
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (404, 409, 413, 422, 429)}


@router.post(
    "/batch",
    response_model=BatchScoreResponse,
    responses={202: {"model": BatchScoreResponse}, 500: {"model": BatchScoreResponse}, **_ERRORS},
)
async def score_batch(body: BatchScoreRequest, settings: SettingsDep, response: Response) -> BatchScoreResponse:
    """Score entities into partitioned Parquet: 200 when done (small jobs), 202 while running (large or async)."""
    record = await jobs.submit_job(SCORING_JOB, body, settings, body.job_id)
    response.status_code = answer_status(record)
    return batch_response(record)


@router.get("/batch/{job_id}", response_model=BatchJobStatus, responses=_ERRORS)
async def get_batch_job(job_id: JobId, settings: SettingsDep) -> BatchJobStatus:
    """A job's status, rows done / total, output path and error."""
    return batch_status(await jobs.get_job(settings, job_id, SCORING_JOB))


@router.get("/batch", response_model=BatchJobList)
async def list_batch_jobs(settings: SettingsDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> BatchJobList:
    """Recent batch-scoring jobs, newest first (one page)."""
    records, _ = await jobs.list_jobs(settings, KIND, limit)
    return BatchJobList(jobs=[batch_status(r) for r in records], total=len(records))
