"""``/mlops/serve/batch``: submit batch-scoring jobs, follow them, list them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status

from asgard_ray.api.deps import service
from asgard_ray.api.errors import ErrorBody
from asgard_ray.scoring import BatchJobList, BatchJobStatus, BatchScoreRequest, BatchScoreResponse, BatchScoringService

router = APIRouter(prefix="/mlops/serve", tags=["batch scoring"])
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (404, 409, 413, 422)}


def get_scoring(request: Request) -> BatchScoringService:
    """The batch-scoring service (one per app)."""
    return service(request, "scoring", BatchScoringService)  # type: ignore[return-value]


ScoringDep = Annotated[BatchScoringService, Depends(get_scoring)]


@router.post(
    "/batch",
    response_model=BatchScoreResponse,
    responses={202: {"model": BatchScoreResponse}, 500: {"model": BatchScoreResponse}, **_ERRORS},
)
def score_batch(body: BatchScoreRequest, scoring: ScoringDep, response: Response) -> BatchScoreResponse:
    """Score entities into partitioned Parquet: 200 when done (small jobs), 202 while running (large or async)."""
    result = scoring.submit(body)
    if result.status in ("running", "pending"):
        response.status_code = status.HTTP_202_ACCEPTED
    elif result.status == "failed":
        response.status_code = status.HTTP_500_INTERNAL_SERVER_ERROR
    return result


@router.get("/batch/{job_id}", response_model=BatchJobStatus, responses=_ERRORS)
def get_batch_job(job_id: str, scoring: ScoringDep) -> BatchJobStatus:
    """A job's status, rows done / total, output path and error."""
    return scoring.get(job_id)


@router.get("/batch", response_model=BatchJobList)
def list_batch_jobs(scoring: ScoringDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> BatchJobList:
    """Recent batch-scoring jobs, newest first."""
    return scoring.list(limit)
