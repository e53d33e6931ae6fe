"""The training service behind ``POST /mlops/models`` and ``GET /mlops/jobs/{id}``.

Every request runs as the Ray task ``training:<job_id>``, so it shows in the dashboard and never
uses the Serve replica's CPU. Synchronous requests wait for the task; ``"async": true`` answers at
once with the job, whose record on S3 tracks trials done and the best metric so far.
"""

from __future__ import annotations

import logging
from typing import Any

from asgard_ray.config import Settings
from asgard_ray.errors import AsgardError
from asgard_ray.jobs import JobKind, JobRecord, JobStore, new_job_id, submit
from asgard_ray.training.pipeline import plan_trials, run_training, validate_request
from asgard_ray.training.schemas import TrainingJob, TrainRequest, TrainResponse

__all__ = ["TrainingService", "job_view", "unwrap_task_error"]

log = logging.getLogger(__name__)

_KINDS: tuple[JobKind, ...] = ("training", "batch_scoring", "monitoring")


def unwrap_task_error(exc: BaseException) -> BaseException:
    """The domain error a Ray task raised, so the API answers with its status (else ``exc``)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, AsgardError):
        return cause
    return exc


def job_view(record: JobRecord) -> TrainingJob:
    """A job record as the API shows it."""
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


class TrainingService:
    """Start training jobs and report on them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.jobs = JobStore(settings)

    def start(self, request: TrainRequest) -> tuple[str, Any]:
        """Validate the request, record the job and submit its Ray task; return the id and ObjectRef."""
        from asgard_ray.runtime import connect

        validate_request(request)
        _, total, _ = plan_trials(request)
        connect(self.settings)
        job_id = new_job_id("train")
        body = request.model_dump(mode="json", by_alias=True)
        self.jobs.create("training", job_id, request=body, progress={"trials_total": total, "trials_done": 0},
                         links={"dashboard": self.settings.dashboard_url})
        ref = submit(self.settings, "training", job_id, run_training, self.settings, body, job_id)
        log.info("job %s submitted: %s/%s for model %s", job_id, request.framework, request.model_type, request.model_name)
        return job_id, ref

    def train(self, request: TrainRequest) -> TrainResponse | TrainingJob:
        """Train; wait for the result unless the request is async (then return the pending job)."""
        import ray

        job_id, ref = self.start(request)
        if request.async_:
            return self.job(job_id)
        try:
            result = ray.get(ref)
        except Exception as exc:
            cause = unwrap_task_error(exc)
            if cause is exc:
                raise
            raise cause from None
        return TrainResponse.model_validate(result)

    def job(self, job_id: str) -> TrainingJob:
        """A job's status (training first, then the platform's other job kinds)."""
        from asgard_ray.errors import NotFound

        kinds = _KINDS if job_id.startswith("train-") else (*_KINDS[1:], _KINDS[0])
        for kind in kinds:
            if self.jobs.exists(kind, job_id):
                return job_view(self.jobs.get(kind, job_id))
        raise NotFound(f"no job {job_id!r}; use the job_id an async request returned")
