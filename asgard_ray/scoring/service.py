"""The batch-scoring service behind ``/mlops/serve/batch``: validate, submit a tracked job, report.

``submit`` validates on the caller's thread (fast 4xx), records the job, and runs it as the Ray task
``batch_scoring:<job_id>`` (visible in the Ray dashboard). Small jobs are awaited, so the answer is
the seed's ``"status": "completed"``; large ones, or ``"async": true``, answer at once (HTTP 202) and
are followed with ``GET /mlops/serve/batch/{job_id}``.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from asgard_ray.config import Settings
from asgard_ray.errors import AsgardError
from asgard_ray.jobs import JobRecord, JobStore, new_job_id, submit
from asgard_ray.scoring.manifest import manifest_uri
from asgard_ray.scoring.pipeline import PipelineOptions
from asgard_ray.scoring.plan import ScoringPlan, prepare_plan
from asgard_ray.scoring.runner import load_model_ref, run_scoring
from asgard_ray.scoring.schemas import BatchJobList, BatchJobStatus, BatchScoreRequest, BatchScoreResponse

__all__ = ["KIND", "BatchScoringService", "score_batch"]

log = logging.getLogger(__name__)

KIND: Final = "batch_scoring"
SYNC_WAIT_S = 300.0
"""How long a synchronous request waits before answering 202 with the job still running."""


def score_batch(
    settings: Settings, plan: ScoringPlan, options: PipelineOptions | None = None, model_box: list[Any] | None = None
) -> dict[str, Any]:
    """Job body: run the plan (``run_tracked`` keeps the job record in step)."""
    return run_scoring(settings, plan, options, model_box)


def _status(record: JobRecord) -> BatchJobStatus:
    req = record.request or {}
    res = record.result or {}
    progress = record.progress or {}
    output = res.get("output_path") or progress.get("output_path") or req.get("output_path")
    return BatchJobStatus(
        job_id=record.job_id,
        status=record.status,
        model_name=res.get("model_name") or req.get("model_name"),
        model_version=res.get("model_version") or progress.get("model_version") or req.get("model_version"),
        output_path=output,
        rows_done=int(res.get("total_rows") or progress.get("rows_done") or 0),
        rows_total=progress.get("rows_total"),
        manifest_path=res.get("manifest_path") or (manifest_uri(output) if record.status == "completed" and output else None),
        error=record.error,
        error_type=record.error_type,
        created_at=record.created_at,
        updated_at=record.updated_at,
        ray_task_name=record.ray_task_name,
        result=record.result,
    )


class BatchScoringService:
    """Submit, follow and list batch-scoring jobs."""

    def __init__(self, settings: Settings, options: PipelineOptions | None = None) -> None:
        self.settings = settings
        self.options = options
        self.store = JobStore(settings)

    def _response(self, plan: ScoringPlan, status: str, result: dict[str, Any] | None = None, error: str | None = None) -> BatchScoreResponse:
        result = result or {}
        return BatchScoreResponse(
            job_id=plan.job_id,
            model_name=plan.model.name,
            model_version=plan.model.version,
            status=status,  # type: ignore[arg-type]
            output_path=plan.output_path,
            alias=plan.model.alias,
            run_id=plan.model.run_id,
            rows_total=plan.rows_total,
            total_rows=result.get("total_rows"),
            manifest_path=result.get("manifest_path"),
            error=error,
            links={"job": f"/mlops/serve/batch/{plan.job_id}", "ray_task": f"{KIND}:{plan.job_id}"},
        )

    def submit(self, request: BatchScoreRequest, *, wait: bool | None = None) -> BatchScoreResponse:
        """Validate and start a job; wait for it when small (or ``wait``), else return it running.

        Raises:
            AsgardError: Validation failures (404/409/413/422), or the job's own domain error when awaited.
        """
        import ray

        job_id = request.job_id or new_job_id("batch")
        if request.job_id and self.store.exists(KIND, job_id):
            record = self.store.get(KIND, job_id)
            if record.status == "completed" and record.result:
                log.info("job %s already completed; answering from its record", job_id)
                plan = prepare_plan(self.settings, request.model_copy(update={"overwrite": True}), job_id)
                return self._response(plan, "completed", record.result)
        plan = prepare_plan(self.settings, request, job_id)
        # Loaded here, where MLflow is already imported, so the job task and its actors never import it.
        model_box = [load_model_ref(self.settings, plan)]
        self.store.create(
            KIND, job_id, request=request.model_dump(mode="json", by_alias=True, exclude={"entities_df"}),
            progress={"rows_total": plan.rows_total, "rows_done": 0, "model_version": plan.model.version,
                      "output_path": plan.output_path, "alias": plan.model.alias},
        )
        ref = submit(self.settings, KIND, job_id, score_batch, self.settings, plan, self.options, model_box)
        log.info("job %s submitted: %s v%s, %d rows -> %s", job_id, plan.model.name, plan.model.version, plan.rows_total, plan.output_path)
        if not (plan.sync if wait is None else wait):
            return self._response(plan, "running")
        try:
            result = ray.get(ref, timeout=SYNC_WAIT_S)
        except ray.exceptions.GetTimeoutError:
            return self._response(plan, "running")
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else None
            if isinstance(cause, AsgardError):
                raise cause from None
            record = self.store.get(KIND, job_id)
            return self._response(plan, "failed", error=record.error or str(exc).splitlines()[0])
        return self._response(plan, "completed", result)

    def get(self, job_id: str) -> BatchJobStatus:
        """One job's status and progress (``NotFound`` if unknown)."""
        return _status(self.store.get(KIND, job_id))

    def list(self, limit: int = 100) -> BatchJobList:
        """Recent jobs, newest first."""
        jobs = [_status(r) for r in self.store.list(KIND, limit=limit)]
        return BatchJobList(jobs=jobs, total=len(jobs))
