"""``/mlops/monitoring``: log metrics, history, alert rules, drift computed from data, and a dashboard page.

History of a model that has no records at all answers 404 (with close names as hints, so a typo
is visible); a known model whose filters match nothing answers 200 with an empty page.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from asgard_ray import jobs
from asgard_ray.api.deps import SettingsDep, service
from asgard_ray.api.errors import ErrorBody
from asgard_ray.errors import InvalidRequest
from asgard_ray.jobs import JobRecord
from asgard_ray.monitoring.actor import MonitoringClient
from asgard_ray.monitoring.compute import DRIFT_JOB
from asgard_ray.monitoring.dashboard import render_dashboard
from asgard_ray.monitoring.rules import RuleSet
from asgard_ray.monitoring.schemas import (
    ComputeRequest,
    HistoryRequest,
    HistoryResponse,
    MonitoringRecord,
    MonitoringRequest,
    MonitoringResponse,
)
from asgard_ray.types import JobId, check_model_name

__all__ = ["router"]

router = APIRouter(prefix="/mlops/monitoring", tags=["monitoring"])
_ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}, 422: {"model": ErrorBody}, 503: {"model": ErrorBody}}


async def get_monitoring(request: Request) -> MonitoringClient:
    """The monitoring client of this app (one per replica; the actor is shared by name)."""
    return service(request, "monitoring", MonitoringClient)  # type: ignore[return-value]


MonitoringDep = Annotated[MonitoringClient, Depends(get_monitoring)]


@router.post("", response_model=MonitoringResponse, responses=_ERRORS)
async def log_metrics(body: MonitoringRequest, monitoring: MonitoringDep) -> MonitoringResponse:
    """Store one record durably, evaluate the alert rules, and return the id, alerts and time."""
    return await monitoring.alog(body)


@router.post("/history", response_model=HistoryResponse, responses=_ERRORS)
async def history(body: HistoryRequest, monitoring: MonitoringDep) -> HistoryResponse:
    """Records of one model (exact name), newest first, with filters, paging and a summary."""
    return await monitoring.ahistory(body)


@router.get("/history", response_model=HistoryResponse, responses=_ERRORS)
async def history_get(
    monitoring: MonitoringDep,
    model_name: str,
    model_version: str | None = None,
    metric_type: str | None = None,
    start_date: str | None = Query(default=None, description="ISO-8601, e.g. 2025-10-01T00:00:00Z or +02:00 offsets"),
    end_date: str | None = None,
    limit: int = 100,
    offset: int = 0,
    alerts_only: bool = False,
) -> HistoryResponse:
    """The GET form of history, with query parameters (``+`` in an offset must be sent as ``%2B``)."""
    try:
        query = HistoryRequest.model_validate(
            {
                "model_name": model_name,
                "model_version": model_version,
                "metric_type": metric_type,
                "start_date": start_date,
                "end_date": end_date,
                "limit": limit,
                "offset": offset,
                "alerts_only": alerts_only,
            }
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise InvalidRequest(f"invalid query: {problems}") from None
    return await monitoring.ahistory(query)


@router.get("/records/{monitoring_id}", response_model=MonitoringRecord, responses=_ERRORS)
async def get_record(monitoring_id: str, monitoring: MonitoringDep) -> MonitoringRecord:
    """One stored record with its reference and current data."""
    return await monitoring.aget(monitoring_id)


@router.get("/models", responses=_ERRORS)
async def monitored_models(monitoring: MonitoringDep) -> dict[str, list[str]]:
    """Monitored models and their versions."""
    return await monitoring.amodels()


@router.get("/rules", responses=_ERRORS)
async def get_global_rules(monitoring: MonitoringDep) -> dict[str, Any]:
    """Global rules and the effective list (global, then defaults)."""
    return await monitoring.aget_rules(None)


@router.put("/rules", responses=_ERRORS)
async def put_global_rules(body: RuleSet, monitoring: MonitoringDep) -> dict[str, Any]:
    """Replace the global rules; a rule named like a default (e.g. ``drift``) may give only its new threshold."""
    return await monitoring.aset_rules(None, body)


@router.get("/rules/{model_name}", responses=_ERRORS)
async def get_model_rules(model_name: str, monitoring: MonitoringDep) -> dict[str, Any]:
    """A model's rules and its effective list (model, then global, then defaults)."""
    return await monitoring.aget_rules(model_name)


@router.put("/rules/{model_name}", responses=_ERRORS)
async def put_model_rules(model_name: str, body: RuleSet, monitoring: MonitoringDep) -> dict[str, Any]:
    """Replace one model's rules."""
    try:
        check_model_name(model_name, "model_name")
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    return await monitoring.aset_rules(model_name, body)


@router.post("/compute", response_model=JobRecord, status_code=202, responses={200: {"model": JobRecord}, **_ERRORS})
async def compute(body: ComputeRequest, settings: SettingsDep, response: Response) -> JobRecord:
    """Start a drift job on a batch scoring output (by job id or output path).

    Answers 202 with the job at once; with ``wait_s`` it waits up to that long (awaiting the job,
    never blocking the event loop) and answers 200 with the finished job, or the job's own error status.
    """
    record = await jobs.submit_job(DRIFT_JOB, body, settings, timeout=body.wait_s)
    response.status_code = 200 if record.done else 202
    return record


@router.get("/compute/{job_id}", response_model=JobRecord, responses=_ERRORS)
async def compute_status(job_id: JobId, settings: SettingsDep) -> JobRecord:
    """Status and result of a drift job (monitoring ids, alerts, MLflow report)."""
    return await jobs.get_job(settings, job_id, DRIFT_JOB)


@router.get("/dashboard", response_class=HTMLResponse, responses=_ERRORS)
async def dashboard(
    monitoring: MonitoringDep,
    model_name: str | None = None,
    per_version: int = Query(default=200, ge=1, le=2000),
) -> HTMLResponse:
    """An HTML page with each model version's metric history and alerts as charts."""
    records = await monitoring.arecent(model_name, per_version)
    return HTMLResponse(await asyncio.to_thread(render_dashboard, records))  # charts of up to 2,000 points each: off the loop
