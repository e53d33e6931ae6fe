"""Job records on S3: one shape for every kind, a time-ordered index for listing, running markers.

Layout under the jobs state location (``Settings.state_uri("jobs")``)::

    <kind>/<job_id>.json                  the record (one PUT: readers see old or new, never half)
    _index/all/<inv_ms>_<kind>_<job_id>   empty marker; keys sort newest first (inverted time)
    _index/<kind>/<inv_ms>_<job_id>       the same, per kind
    _running/<kind>/<job_id>              present while the job is pending or running
    _queue/<kind>/<seq>_<job_id>          a queued job's plan (``asgard_ray.jobs.queue``)

A list reads one page of index keys (``MaxKeys``) and then only the records on that page; the
supervisor's reconcile loop lists ``_running/`` instead of reading every record.
"""

from __future__ import annotations

import builtins
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, Field

from asgard_ray.config import Settings
from asgard_ray.errors import NotFound
from asgard_ray.storage import read_json, write_json
from asgard_ray.types import is_job_id

__all__ = [
    "KIND_NAME",
    "SUPERVISOR_NAME",
    "TERMINAL",
    "JobRecord",
    "JobStatus",
    "JobStore",
    "new_job_id",
]

log = logging.getLogger(__name__)

SUPERVISOR_NAME: Final = "asgard-jobs"
"""The named, detached actor that owns every job's task (``asgard_ray.jobs.supervisor``)."""
KIND_NAME: Final = r"^[a-z][a-z0-9_]{0,39}$"
"""What a job kind's name looks like (the kinds themselves register with ``asgard_ray.jobs.kinds``)."""
JobStatus = Literal["queued", "pending", "running", "completed", "failed", "cancelled"]
"""The one job-status type of the platform: ``queued`` waits for a slot of its kind (FIFO)."""
TERMINAL: Final = frozenset({"completed", "failed", "cancelled"})
_INV: Final = 10**13  # ms since the epoch stay below this until the year 2286


def _now() -> datetime:
    return datetime.now(UTC)


def new_job_id(prefix: str) -> str:
    """A fresh job id such as ``batch-3f2a9c1b7d4e``."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class JobRecord(BaseModel):
    """The state of one tracked job (the same shape for every kind)."""

    job_id: str
    kind: str = Field(pattern=KIND_NAME)
    status: JobStatus = "pending"
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)
    started_at: datetime | None = Field(default=None, description="When its task started (after any time in the queue).")
    progress: dict[str, Any] = Field(default_factory=dict)
    request: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    error_type: str | None = None
    error_detail: dict[str, Any] | None = Field(default=None, description="The domain error's detail, when the job raised one.")
    ray_task_name: str | None = None
    links: dict[str, str] = Field(default_factory=dict)
    owner_epoch: str | None = Field(default=None, description="Epoch of the supervisor that owns the job's task.")
    attempt: int = 0
    index_key: str | None = Field(default=None, description="This record's key in the time-ordered job index.")

    @property
    def done(self) -> bool:
        """Whether the job reached a terminal status."""
        return self.status in TERMINAL


class JobStore:
    """Read and write job records on S3."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        root = settings.state_uri("jobs").removeprefix("s3://")
        self._bucket, _, self._root = root.partition("/")

    # --- keys -----------------------------------------------------------------------------------
    def _uri(self, kind: str, job_id: str) -> str:
        return self.settings.state_uri("jobs", kind, f"{job_id}.json")

    def _key(self, *parts: str) -> str:
        return "/".join((self._root, *parts))

    def _s3(self) -> Any:
        from asgard_ray.storage import s3_client

        return s3_client(self.settings)

    # --- records ----------------------------------------------------------------------------------
    def create(self, kind: str, job_id: str, request: dict[str, Any] | None = None, **fields: Any) -> JobRecord:
        """Write a new pending record (replacing an earlier, finished one of the same id) and index it."""
        previous = self.find(kind, job_id)
        record = JobRecord(job_id=job_id, kind=kind, request=request, **fields)
        if previous is not None:
            record.attempt = previous.attempt + 1
        inv = f"{_INV - int(time.time() * 1000):013d}"
        record.index_key = inv
        s3, bucket = self._s3(), self._bucket
        s3.put_object(Bucket=bucket, Key=self._key("_index", "all", f"{inv}.{kind}.{job_id}"), Body=b"")
        s3.put_object(Bucket=bucket, Key=self._key("_index", kind, f"{inv}_{job_id}"), Body=b"")
        if previous is not None and previous.index_key:
            self._drop_index(kind, job_id, previous.index_key)
        if record.status in ("pending", "running"):  # a queued job's marker is its queue entry
            self.mark_running(kind, job_id)
        self.save(record)
        return record

    def _drop_index(self, kind: str, job_id: str, inv: str) -> None:
        s3, bucket = self._s3(), self._bucket
        for key in (
            self._key("_index", "all", f"{inv}.{kind}.{job_id}"),
            self._key("_index", "all", f"{inv}_{kind}_{job_id}"),  # written by releases before the dots
            self._key("_index", kind, f"{inv}_{job_id}"),
        ):
            s3.delete_object(Bucket=bucket, Key=key)

    def save(self, record: JobRecord) -> JobRecord:
        """Write the record (one S3 PUT); a terminal record also drops its running marker."""
        record.updated_at = _now()
        write_json(self.settings, self._uri(record.kind, record.job_id), record.model_dump(mode="json"))
        if record.done:
            self.clear_running(record.kind, record.job_id)
        return record

    def update(self, kind: str, job_id: str, **fields: Any) -> JobRecord:
        """Read, change and write a record.

        A record that is already finished keeps its status: a late progress report of a task the
        reconciler declared dead never turns it back to ``running``.
        """
        record = self.get(kind, job_id)
        if record.done and "status" not in fields:
            return record
        for key, value in fields.items():
            if key == "progress":
                record.progress.update(value)
            elif key == "links":
                record.links.update(value)
            else:
                setattr(record, key, value)
        return self.save(record)

    def find(self, kind: str, job_id: str) -> JobRecord | None:
        """One record, or None (also for an id that no job can have)."""
        from botocore.exceptions import ClientError

        if not is_job_id(job_id):
            return None
        try:
            return JobRecord.model_validate(read_json(self.settings, self._uri(kind, job_id)))
        except FileNotFoundError:
            return None
        except ClientError as exc:  # NoSuchKey of another client instance (clients made in parallel threads)
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise

    def exists(self, kind: str, job_id: str) -> bool:
        """Whether a record exists."""
        return self.find(kind, job_id) is not None

    def get(self, kind: str, job_id: str) -> JobRecord:
        """One record, or ``NotFound``."""
        record = self.find(kind, job_id)
        if record is None:
            raise NotFound(f"no {kind.replace('_', ' ')} job {job_id!r}")
        return record

    def locate(self, job_id: str, kinds: tuple[str, ...] = ()) -> JobRecord | None:
        """The record of ``job_id`` whatever its kind: ``kinds`` tried first, then every kind that has records."""
        tried: set[str] = set()
        for kind in kinds:
            tried.add(kind)
            record = self.find(kind, job_id)
            if record is not None:
                return record
        for kind in self.kinds():
            if kind not in tried:
                record = self.find(kind, job_id)
                if record is not None:
                    return record
        return None

    def kinds(self) -> builtins.list[str]:
        """The kinds that have records here (one LIST of the folders)."""
        resp = self._s3().list_objects_v2(Bucket=self._bucket, Prefix=self._root + "/", Delimiter="/")
        names = [p["Prefix"][len(self._root) + 1 :].rstrip("/") for p in resp.get("CommonPrefixes", [])]
        return [n for n in names if not n.startswith("_")]

    # --- listing ----------------------------------------------------------------------------------
    def page(
        self, kind: str | None = None, limit: int = 100, cursor: str | None = None, kinds: tuple[str, ...] = ()
    ) -> tuple[list[JobRecord], str | None]:
        """One page of records, newest first, and the cursor of the next page (None at the end).

        Reads one ``ListObjectsV2`` page of index keys and then only those records. The all-kinds
        index names each job ``<inv>.<kind>.<job_id>`` (neither a kind nor a job id holds a dot);
        ``kinds`` only parse the keys of earlier releases (``<inv>_<kind>_<job_id>``).
        """
        prefix = self._key("_index", kind or "all") + "/"
        args: dict[str, Any] = {"Bucket": self._bucket, "Prefix": prefix, "MaxKeys": max(1, min(limit, 1000))}
        if cursor:
            args["StartAfter"] = prefix + cursor
        resp = self._s3().list_objects_v2(**args)
        keys = [obj["Key"][len(prefix) :] for obj in resp.get("Contents", [])]
        records: list[JobRecord] = []
        for name in keys:
            if kind is not None:
                job_kind, job_id = kind, name.split("_", 1)[1]
            elif name.count(".") == 2:
                _, job_kind, job_id = name.split(".")
            else:
                rest = name.split("_", 1)[1]
                known = next((k for k in sorted(kinds, key=len, reverse=True) if rest.startswith(f"{k}_")), None)
                if known is None:
                    continue
                job_kind, job_id = known, rest[len(known) + 1 :]
            record = self.find(job_kind, job_id)
            if record is not None:
                records.append(record)
        more = resp.get("IsTruncated") and keys
        return records, (keys[-1] if more else None)

    def list(self, kind: str, limit: int = 100) -> list[JobRecord]:
        """The newest records of a kind, newest first (one page)."""
        return self.page(kind, limit)[0]

    # --- running markers --------------------------------------------------------------------------
    def mark_running(self, kind: str, job_id: str) -> None:
        """Note that ``job_id`` is pending or running (the reconciler's work list)."""
        self._s3().put_object(Bucket=self._bucket, Key=self._key("_running", kind, job_id), Body=b"")

    def clear_running(self, kind: str, job_id: str) -> None:
        """Drop the running marker of ``job_id``."""
        self._s3().delete_object(Bucket=self._bucket, Key=self._key("_running", kind, job_id))

    def running(self, limit: int = 1000) -> builtins.list[tuple[str, str]]:  # `list` is a method here
        """``(kind, job_id)`` of jobs that are marked pending or running."""
        prefix = self._key("_running") + "/"
        resp = self._s3().list_objects_v2(Bucket=self._bucket, Prefix=prefix, MaxKeys=limit)
        out = []
        for obj in resp.get("Contents", []):
            kind, _, job_id = obj["Key"][len(prefix) :].partition("/")
            if kind and job_id:
                out.append((kind, job_id))
        return out
