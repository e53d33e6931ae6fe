"""Training as a job kind: ``POST /mlops/models``, ``jobs/train.py`` and ``GET /mlops/jobs/{id}``.

``TRAINING_JOB`` declares how a ``TrainRequest`` is prepared (validation and the trial plan, on
the caller: fast 4xx), run (``run_training`` in the Ray task ``training:<job_id>``, owned by the
jobs supervisor) and viewed (``TrainingJob``). Training is not idempotent (it creates MLflow runs),
so a crashed task is never retried: the job fails with its cause and may be sent again.
"""

from __future__ import annotations

import logging
from typing import Any

from asgard_ray.config import Settings
from asgard_ray.jobs import (
    JobFailed,
    JobKind,
    JobRecord,
    Plan,
    get_job_sync,
    start_job_sync,
    wait_job_sync,
)
from asgard_ray.training.schemas import TrainingJob, TrainRequest, TrainResponse

__all__ = ["TRAINING_JOB", "TrainingService", "job_view", "train_answer"]

log = logging.getLogger(__name__)


def job_view(record: JobRecord) -> TrainingJob:
    """A job record as ``GET /mlops/jobs/{id}`` shows it (any kind; trial fields for training)."""
    progress = record.progress
    return TrainingJob(
        job_id=record.job_id,
        kind=record.kind,
        status=record.status,
        created_at=record.created_at,
        updated_at=record.updated_at,
        trials_total=progress.get("trials_total"),
        trials_done=int(progress.get("trials_done") or 0),
        trials_failed=int(progress.get("trials_failed") or 0),
        metric=progress.get("metric"),
        best_metric=progress.get("best_metric"),
        run_id=progress.get("run_id") or (record.result or {}).get("run_id"),
        error=record.error,
        result=record.result,
        links={**record.links, **({"ray_task": record.ray_task_name} if record.ray_task_name else {})},
    )


def train_answer(record: JobRecord) -> TrainResponse | TrainingJob:
    """The answer to a train request: the result when completed, the job while it runs.

    Raises:
        JobFailed: The job failed for a reason other than a domain error (500 with its cause).
    """
    if record.status == "completed" and record.result:
        return TrainResponse.model_validate(record.result)
    if record.status == "failed":
        raise JobFailed(record.error or f"training job {record.job_id} failed", detail={"job_id": record.job_id})
    return job_view(record)


def _prepare(request: TrainRequest, settings: Settings, job_id: str) -> Plan:
    from asgard_ray.features.retrieval import pin_view_tables
    from asgard_ray.training.modes import fast_path
    from asgard_ray.training.pipeline import plan_trials, validate_request

    validate_request(request, settings)
    # the gold snapshots are pinned here, at submission, on the caller: a pin of a table the views do not
    # read (422) or of no snapshot (404) is refused before any job, and the job (and a retry of it) reads
    # the snapshots that were current when it was accepted, not when a worker got to it
    tables = pin_view_tables(settings, request.data_source.feature_views, request.as_of_snapshot)
    _, total, _ = plan_trials(request)
    body = request.model_dump(mode="json", by_alias=True)
    pinned = {name: t.snapshot_id for name, t in tables.items() if t.snapshot_id is not None}
    warm, why = fast_path(request, settings)
    return Plan(
        job_id=job_id,
        settings=settings,
        payload={**body, "as_of_snapshot": pinned or None},
        request=body,
        progress={"trials_total": total, "trials_done": 0, "fast_path": why},
        links={"dashboard": settings.dashboard_url},
        wait=not request.async_,
        warm=warm,
    )


def _run(plan: Plan) -> dict[str, Any]:
    from asgard_ray.training.pipeline import run_training

    return run_training(plan.settings, plan.payload, plan.job_id, path=plan.path)


TRAINING_JOB = JobKind(
    name="training",
    id_prefix="train",
    prepare=_prepare,
    run=_run,
    view=job_view,
    limit_setting="asgard_max_running_jobs_training",
    default_limit=2,
    max_retries=0,
    wait_s=3600.0,
)


class TrainingService:
    """Sync façade over the jobs core for library callers and tests."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def start(self, request: TrainRequest) -> tuple[str, Any]:
        """Validate the request and start its job; return the job id and the task's ObjectRef."""
        started = start_job_sync("training", request, self.settings)
        return started.record.job_id, started.ref

    def train(self, request: TrainRequest) -> TrainResponse | TrainingJob:
        """Train; wait for the result unless the request is async (then return the pending job)."""
        started = start_job_sync("training", request, self.settings)
        if started.wait:
            wait_job_sync(started)
        return train_answer(get_job_sync(self.settings, started.record.job_id, "training"))

    def job(self, job_id: str) -> TrainingJob:
        """A job's status (any kind)."""
        return job_view(get_job_sync(self.settings, job_id))
