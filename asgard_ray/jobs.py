"""Tracked jobs: ids, status and progress on S3, work run as named Ray tasks.

Long work (training, batch scoring, drift computation) runs as a Ray task named ``<kind>:<job_id>``,
so it shows in the Ray dashboard and never runs in a Serve replica's event loop. Its record lives at
``s3://<bucket>/jobs/<kind>/<job_id>.json`` so any replica, node or restarted process can answer
``GET`` for it. The task itself is the record's only writer while it runs.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from asgard_ray.config import Settings
from asgard_ray.errors import AsgardError, NotFound
from asgard_ray.storage import exists, list_files, read_json, write_json

__all__ = ["JobKind", "JobRecord", "JobStatus", "JobStore", "new_job_id", "run_tracked", "submit"]

log = logging.getLogger(__name__)

JobKind = Literal["training", "batch_scoring", "monitoring"]
JobStatus = Literal["pending", "running", "completed", "failed"]


def _now() -> datetime:
    return datetime.now(UTC)


def new_job_id(prefix: str) -> str:
    """A fresh job id such as ``batch-3f2a9c1b7d4e``."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class JobRecord(BaseModel):
    """The state of one tracked job."""

    job_id: str
    kind: JobKind
    status: JobStatus = "pending"
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)
    progress: dict[str, Any] = Field(default_factory=dict)
    request: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    error_type: str | None = None
    ray_task_name: str | None = None
    links: dict[str, str] = Field(default_factory=dict)


class JobStore:
    """Read and write job records on S3."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _uri(self, kind: str, job_id: str) -> str:
        return self.settings.s3_uri("jobs", kind, f"{job_id}.json")

    def create(self, kind: JobKind, job_id: str, request: dict[str, Any] | None = None, **fields: Any) -> JobRecord:
        """Write a new pending record."""
        record = JobRecord(job_id=job_id, kind=kind, request=request, **fields)
        self.save(record)
        return record

    def save(self, record: JobRecord) -> JobRecord:
        """Write the record (one S3 PUT: readers see the old or the new state, never half)."""
        record.updated_at = _now()
        write_json(self.settings, self._uri(record.kind, record.job_id), record.model_dump(mode="json"))
        return record

    def update(self, kind: JobKind, job_id: str, **fields: Any) -> JobRecord:
        """Read, change and write a record."""
        record = self.get(kind, job_id)
        for key, value in fields.items():
            if key == "progress":
                record.progress.update(value)
            else:
                setattr(record, key, value)
        return self.save(record)

    def exists(self, kind: JobKind, job_id: str) -> bool:
        """Whether a record exists."""
        return exists(self.settings, self._uri(kind, job_id))

    def get(self, kind: JobKind, job_id: str) -> JobRecord:
        """One record, or ``NotFound``."""
        uri = self._uri(kind, job_id)
        if not exists(self.settings, uri):
            raise NotFound(f"no {kind.replace('_', ' ')} job {job_id!r}")
        return JobRecord.model_validate(read_json(self.settings, uri))

    def list(self, kind: JobKind, limit: int = 100) -> list[JobRecord]:
        """The newest records of a kind, newest first."""
        files = list_files(self.settings, self.settings.s3_uri("jobs", kind))
        records = [JobRecord.model_validate(read_json(self.settings, f"s3://{f}")) for f in files if f.endswith(".json")]
        records.sort(key=lambda r: r.created_at, reverse=True)
        return records[:limit]


def run_tracked(
    settings: Settings,
    kind: JobKind,
    job_id: str,
    fn: Callable[..., dict[str, Any]],
    *args: Any,
    **kwargs: Any,
) -> dict[str, Any]:
    """Run ``fn`` and keep the job record in step: running, then completed with its result or failed.

    Domain errors keep their type in ``error_type`` so the API can answer with the right status.
    """
    store = JobStore(settings)
    store.update(kind, job_id, status="running")
    try:
        result = fn(*args, **kwargs)
    except Exception as exc:
        message = exc.message if isinstance(exc, AsgardError) else f"{type(exc).__name__}: {exc}"
        log.error("job %s failed: %s\n%s", job_id, message, traceback.format_exc())
        store.update(kind, job_id, status="failed", error=message, error_type=type(exc).__name__)
        raise
    store.update(kind, job_id, status="completed", result=result)
    return result


def submit(
    settings: Settings,
    kind: JobKind,
    job_id: str,
    fn: Callable[..., dict[str, Any]],
    *args: Any,
    num_cpus: float = 0,
    **kwargs: Any,
) -> Any:
    """Run ``fn`` as a Ray task named ``<kind>:<job_id>``, tracked; returns the ObjectRef.

    The task asks for no CPU by default: it orchestrates, and the work it fans out (trials,
    Ray Data operators) asks for its own. It is not retried: a job either completes or is marked
    failed with its error, and the caller may submit it again under the same id.
    """
    import ray

    task = ray.remote(run_tracked).options(
        name=f"{kind}:{job_id}", num_cpus=num_cpus, max_retries=0, retry_exceptions=False
    )
    JobStore(settings).update(kind, job_id, ray_task_name=f"{kind}:{job_id}")
    return task.remote(settings, kind, job_id, fn, *args, **kwargs)
