"""Batch scoring as a job kind: ``/mlops/serve/batch``, ``jobs/batch_score.py`` and the job views.

``SCORING_JOB`` declares how a ``BatchScoreRequest`` is prepared (``prepare_plan``: model, output
path and entities checked on the caller, 4xx before any job exists; the native model is loaded
there and put in the object store, owned by the jobs supervisor so it outlives the caller), run
(``run_scoring`` in the Ray task ``batch_scoring:<job_id>``) and viewed. Scoring is exactly-once
by design (job-named files, manifest last, a re-run removes an earlier attempt's files), so the
supervisor may retry a crashed task once; a job failed by the reconciler has its partial files
removed by the sink's cleanup.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from asgard_ray.config import Settings
from asgard_ray.jobs import (
    JobKind,
    JobRecord,
    Plan,
    get_job_sync,
    list_jobs_sync,
    register_kind,
    submit_job_sync,
)
from asgard_ray.scoring.manifest import manifest_uri
from asgard_ray.scoring.pipeline import PipelineOptions
from asgard_ray.scoring.schemas import (
    BatchJobList,
    BatchJobStatus,
    BatchScoreRequest,
    BatchScoreResponse,
)

__all__ = ["KIND", "SCORING_JOB", "BatchScoringService", "ScoringInput", "batch_response", "batch_status"]

log = logging.getLogger(__name__)

KIND: Final = "batch_scoring"


@dataclass
class ScoringInput:
    """A request plus pipeline knobs (tests and benchmarks tune the pipeline; the API does not)."""

    request: BatchScoreRequest
    options: PipelineOptions | None = None


def _fields(record: JobRecord) -> dict[str, Any]:
    req, res, progress = record.request or {}, record.result or {}, record.progress or {}
    output = res.get("output_path") or progress.get("output_path") or req.get("output_path")
    return {
        "model_name": res.get("model_name") or progress.get("model_name") or req.get("model_name"),
        "model_version": res.get("model_version") or progress.get("model_version") or req.get("model_version"),
        "output_path": output,
        "output_table": res.get("output_table") or progress.get("output_table") or req.get("output_table"),
        "manifest_path": res.get("manifest_path") or (manifest_uri(output) if record.status == "completed" and output else None),
        "rows_total": progress.get("rows_total"),
    }


def batch_status(record: JobRecord) -> BatchJobStatus:
    """``GET /mlops/serve/batch/{job_id}``: a job's state and progress."""
    res, progress = record.result or {}, record.progress or {}
    return BatchJobStatus(
        job_id=record.job_id,
        status=record.status,
        **_fields(record),
        rows_done=int(res.get("total_rows") or progress.get("rows_done") or 0),
        queue_position=progress.get("queue_position") if record.status == "queued" else None,
        error=record.error,
        error_type=record.error_type,
        created_at=record.created_at,
        updated_at=record.updated_at,
        ray_task_name=record.ray_task_name,
        result=record.result,
    )


def batch_response(record: JobRecord) -> BatchScoreResponse:
    """The answer to ``POST /mlops/serve/batch`` (the seed's shape, plus where to look)."""
    res, progress = record.result or {}, record.progress or {}
    fields = _fields(record)
    return BatchScoreResponse(
        job_id=record.job_id,
        status=record.status,
        model_name=fields["model_name"] or "",
        model_version=str(fields["model_version"] or ""),
        output_path=fields["output_path"] or "",
        output_table=fields["output_table"],
        alias=res.get("alias") or progress.get("alias"),
        run_id=res.get("run_id") or progress.get("run_id"),
        rows_total=fields["rows_total"],
        total_rows=res.get("total_rows"),
        queue_position=progress.get("queue_position") if record.status == "queued" else None,
        manifest_path=fields["manifest_path"],
        feature_snapshots=res.get("feature_snapshots") or progress.get("feature_snapshots"),
        output_snapshot_id=res.get("output_snapshot_id"),
        execution_path=res.get("execution_path") or progress.get("execution_path"),
        error=record.error,
        links={"job": f"/mlops/serve/batch/{record.job_id}", "ray_task": f"{KIND}:{record.job_id}"},
    )


def _prepare(request: BatchScoreRequest | ScoringInput, settings: Settings, job_id: str) -> Plan:
    import cloudpickle

    from asgard_ray.scoring.model import load_native_model
    from asgard_ray.scoring.plan import prepare_plan

    given = request if isinstance(request, ScoringInput) else ScoringInput(request)
    plan = prepare_plan(settings, given.request, job_id)
    # Loaded here, where MLflow is already imported, so the job task and its actors never import it.
    # It travels as bytes (the supervisor never unpickles it); the task puts it in the object store.
    plan.flavor, obj = load_native_model(settings, plan.model)
    # small work with the default pipeline runs on a warm worker (tests that tune the pipeline, e.g. to
    # inject faults into Ray Data's actors, keep the cluster path)
    limit = settings.asgard_fast_path_rows
    warm = 0 < plan.rows_total <= limit and (given.options is None or given.options == PipelineOptions())
    return Plan(
        job_id=job_id,
        settings=settings,
        payload=(plan, given.options, cloudpickle.dumps(obj)),
        request=given.request.model_dump(mode="json", by_alias=True, exclude={"entities_df"}),
        progress={
            "rows_total": plan.rows_total,
            "rows_done": 0,
            "model_name": plan.model.name,
            "model_version": plan.model.version,
            "output_path": plan.output_path,
            "output_table": plan.output_table,
            "feature_snapshots": plan.feature_snapshots,
            "alias": plan.model.alias,
            "run_id": plan.model.run_id,
        },
        wait=plan.sync,
        warm=warm,
    )


def _run(plan: Plan) -> dict[str, Any]:
    import cloudpickle
    import ray

    from asgard_ray.scoring.runner import run_scoring
    from asgard_ray.storage import release_claim

    scoring_plan, options, model_bytes = plan.payload
    model = cloudpickle.loads(model_bytes)
    box = [model] if plan.path == "warm" else [ray.put(model)]  # in process, or for Ray Data's workers
    try:
        return run_scoring(plan.settings, scoring_plan, options, box, path=plan.path)
    finally:  # the submission's claim, if the run ended before its own lease took it over (a no-op otherwise)
        release_claim(plan.settings, scoring_plan.output_path, plan.job_id)


def _cleanup(record: JobRecord, settings: Settings) -> None:
    """Remove the files a dead job left (the manifest rules ignore them anyway); never a committed output."""
    from asgard_ray.scoring.sink import delete_files, job_files
    from asgard_ray.storage import exists, read_json, release_claim

    output = _fields(record)["output_path"]
    if not output:
        return
    uri = manifest_uri(output)
    if exists(settings, uri) and read_json(settings, uri).get("job_id") == record.job_id:
        return
    stale = job_files(settings, output, record.job_id)
    if stale:
        log.warning("job %s: removing %d partial file(s) under %s", record.job_id, len(stale), output)
        delete_files(settings, stale)
    release_claim(settings, output, record.job_id)  # a claim no run took over would block the path for its TTL


def _reserve(plan: Plan) -> Callable[[], None]:
    """Claim the output path's lease at submission: a second job on it gets 409 now, not a failed job later."""
    from asgard_ray.storage import reserve_output

    scoring_plan = plan.payload[0]
    return reserve_output(plan.settings, scoring_plan.output_path, plan.job_id)


SCORING_JOB = register_kind(
    JobKind(
        name=KIND,
        id_prefix="batch",
        prepare=_prepare,
        run=_run,
        view=batch_status,
        settings_key="scoring",
        max_retries=1,
        wait_s=300.0,
        on_failed=_cleanup,
        reserve=_reserve,
        preload=("sklearn.ensemble", "xgboost", "lightgbm", "asgard_ray.scoring.runner", "asgard_ray.scoring.pipeline", "cloudpickle"),
    )
)


class BatchScoringService:
    """Sync façade over the jobs core for library callers and tests."""

    def __init__(self, settings: Settings, options: PipelineOptions | None = None) -> None:
        self.settings = settings
        self.options = options

    def submit(self, request: BatchScoreRequest, *, wait: bool | None = None) -> BatchScoreResponse:
        """Validate and start a job; wait for it when small (or ``wait``), else return it running.

        Raises:
            AsgardError: Validation failures (404/409/413/422/429), or the job's own domain error when awaited.
        """
        record = submit_job_sync(SCORING_JOB, ScoringInput(request, self.options), self.settings, request.job_id, wait)
        return batch_response(record)

    def get(self, job_id: str) -> BatchJobStatus:
        """One job's status and progress (``NotFound`` if unknown)."""
        return batch_status(get_job_sync(self.settings, job_id, SCORING_JOB))

    def list(self, limit: int = 100) -> BatchJobList:
        """Recent jobs, newest first (one page)."""
        jobs = [batch_status(r) for r in list_jobs_sync(self.settings, KIND, limit)[0]]
        return BatchJobList(jobs=jobs, total=len(jobs))
