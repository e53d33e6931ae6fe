"""``/mlops/jobs``: every tracked job, whatever its kind (training, batch scoring, drift, materialize).

Reading a job reconciles it with Ray's state (a job whose task is gone is answered ``failed``
with the cause, never left ``running``; a queued one carries its live position); the list reads one
page of the time-ordered index; ``DELETE`` cancels a queued job.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from asgard_ray import jobs
from asgard_ray.api.deps import SettingsDep
from asgard_ray.api.errors import ErrorBody
from asgard_ray.jobs import JobRecord
from asgard_ray.jobs.records import KIND_NAME
from asgard_ray.training.schemas import TrainingJob
from asgard_ray.training.service import job_view
from asgard_ray.types import JobId

__all__ = ["JobPage", "answer_status", "router"]

router = APIRouter(prefix="/mlops", tags=["jobs"])
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (404, 409, 422, 503)}


class JobPage(BaseModel):
    """One page of jobs, newest first; pass ``next_cursor`` as ``cursor`` for the next page."""

    jobs: list[TrainingJob]
    next_cursor: str | None = None


def answer_status(record: JobRecord) -> int:
    """HTTP status of a submit answer: 200 done, 202 still queued or running, 500 failed (the body says why)."""
    return {"completed": 200, "failed": 500, "cancelled": 409}.get(record.status, 202)


@router.get("/jobs/{job_id}", response_model=TrainingJob, responses=_ERRORS)
async def get_job(job_id: JobId, settings: SettingsDep) -> TrainingJob:
    """Status of a job: trials done, best metric so far, error, dashboard and MLflow links."""
    return job_view(await jobs.get_job(settings, job_id))


@router.get("/jobs", response_model=JobPage, responses=_ERRORS)
async def list_jobs(
    settings: SettingsDep,
    kind: Annotated[str | None, Query(pattern=KIND_NAME)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200, pattern=r"^[A-Za-z0-9_-]+$")] = None,
) -> JobPage:
    """Recent jobs of every kind (or one ``kind``), newest first, one page at a time."""
    records, next_cursor = await jobs.list_jobs(settings, kind, limit, cursor)
    return JobPage(jobs=[job_view(r) for r in records], next_cursor=next_cursor)


@router.delete("/jobs/{job_id}", response_model=TrainingJob, responses=_ERRORS)
async def cancel_job(job_id: JobId, settings: SettingsDep) -> TrainingJob:
    """Cancel a queued job: it never runs and leaves no output (409 if it is already running)."""
    return job_view(await jobs.cancel_job(settings, job_id))
