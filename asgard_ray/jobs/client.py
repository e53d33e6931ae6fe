"""The jobs core's way in: start a job of any kind, wait for it, read it (reconciled), list, cancel.

Every way in is a thin adapter over these functions: HTTP routes use the ``async`` ones (they
``await`` the supervisor with a timeout and run blocking calls in threads, so the event loop stays
free), ``jobs/*.py`` and tests use the ``*_sync`` twins. The steps are the same for every kind:

1. ``find`` an earlier run of a requested job id: a completed one is answered as it is; a running
   one is a ``Conflict`` (after reconciling it, so a dead one does not block its id);
2. ``prepare`` the request on the caller (fast 4xx, before any job exists), and ``reserve`` what
   the job will hold exclusively;
3. the supervisor starts the job, or queues it behind its kind's running jobs (429 only when the
   queue is full);
4. wait (or not) and answer the record; a job that failed with a domain error raises that error.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from asgard_ray.config import Settings
from asgard_ray.errors import NotFound, ServiceUnavailable
from asgard_ray.jobs.failures import JobFailed, domain_error, error_from_record
from asgard_ray.jobs.kinds import JobKind, get_kind, kind_names, registered_kinds
from asgard_ray.jobs.records import SUPERVISOR_NAME, JobRecord, JobStore, new_job_id
from asgard_ray.jobs.supervisor import JobSupervisor

__all__ = [
    "Started",
    "cancel_job",
    "get_job",
    "get_job_sync",
    "get_supervisor",
    "list_jobs",
    "list_jobs_sync",
    "run_job",
    "run_sync",
    "start_job",
    "start_job_sync",
    "submit_job",
    "submit_job_sync",
    "supervisor_info",
    "wait_job",
    "wait_job_sync",
]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Started:
    """A job the caller started, queued, or found already completed."""

    kind: JobKind
    record: JobRecord
    wait: bool


# --- the supervisor ------------------------------------------------------------------------------
_HANDLES: dict[str, Any] = {}


def get_supervisor(settings: Settings, *, fresh: bool = False) -> Any:
    """The supervisor actor of this namespace, created on first use with the kinds registered here (blocking)."""
    import ray

    from asgard_ray.runtime import connect

    ns = settings.ray_namespace
    if ns in _HANDLES and not fresh:
        return _HANDLES[ns]
    connect(settings)
    actor = ray.remote(JobSupervisor).options(
        name=SUPERVISOR_NAME,
        namespace=ns,
        lifetime="detached",
        get_if_exists=True,
        num_cpus=0,
        max_restarts=-1,
        max_task_retries=0,
        max_concurrency=1000,
        runtime_env={"env_vars": settings.worker_env()},
    )
    _HANDLES[ns] = actor.remote(settings, registered_kinds())
    return _HANDLES[ns]


async def _call(settings: Settings, method: str, *args: Any) -> Any:
    """Call a supervisor method; a domain error it raised comes back as itself."""
    import ray.exceptions as rex

    handle = await asyncio.to_thread(get_supervisor, settings)
    for attempt in (1, 2):
        try:
            return await getattr(handle, method).remote(*args)
        except Exception as exc:
            err = domain_error(exc)
            if attempt == 1 and isinstance(exc, rex.ActorDiedError):  # killed for good: make a new one
                handle = await asyncio.to_thread(get_supervisor, settings, fresh=True)
                continue
            if err is not None:
                raise err from None
            raise
    raise AssertionError("unreachable")


async def supervisor_info(settings: Settings) -> dict[str, Any]:
    """The supervisor's epoch, running and queued jobs per kind, and warm workers (``/mlops/status``)."""
    info: dict[str, Any] = await _call(settings, "info")
    return info


# --- async API (routes) ----------------------------------------------------------------------------
async def _reconciled(settings: Settings, kind: JobKind | str, job_id: str) -> JobRecord:
    return JobRecord.model_validate(await _call(settings, "reconcile", kind, job_id, settings))


async def start_job(kind: JobKind | str, request: Any, settings: Settings, job_id: str | None = None) -> Started:
    """Validate ``request``, then start (or queue) the job, or find it completed.

    Raises:
        AsgardError: From ``prepare`` (4xx), ``Conflict`` for a running or queued job id, ``TooManyJobs``
            (429) when the kind's queue is full.
    """
    kind = get_kind(kind)
    if job_id:
        existing = await asyncio.to_thread(JobStore(settings).find, kind.name, job_id)
        if existing is not None and not existing.done:
            existing = await _reconciled(settings, kind, job_id)
        if existing is not None and existing.status == "completed":
            log.info("job %s already completed; answering from its record", job_id)
            return Started(kind, existing, True)
    plan = await asyncio.to_thread(kind.prepare, request, settings, job_id or new_job_id(kind.id_prefix))
    release = await asyncio.to_thread(kind.reserve, plan) if kind.reserve is not None else None
    try:
        record = JobRecord.model_validate(await _call(settings, "submit", kind, plan))
    except BaseException:
        if release is not None:
            await asyncio.to_thread(release)
        raise
    return Started(kind, record, plan.wait)


async def wait_job(started: Started, settings: Settings, timeout: float | None = None) -> JobRecord:
    """Wait up to ``timeout`` seconds (default the kind's ``wait_s``; ``inf``: no limit) and read the record again.

    A queued job waits for its turn within the same time. A supervisor that restarts meanwhile is
    waited out by polling the record.
    """
    if started.record.done:
        return started.record
    limit = started.kind.wait_s if timeout is None else timeout
    deadline = asyncio.get_running_loop().time() + (limit if limit != float("inf") else 10**9)
    job_id = started.record.job_id
    while True:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            break
        try:
            if await _call(settings, "wait", job_id, min(left, 3600.0)):
                break
        except ServiceUnavailable:  # the supervisor restarts: its successor takes the job up again
            await asyncio.sleep(min(1.0, max(left, 0)))
    return await get_job(settings, job_id, started.kind)


async def submit_job(
    kind: JobKind | str, request: Any, settings: Settings, job_id: str | None = None, wait: bool | None = None, timeout: float | None = None
) -> JobRecord:
    """Start a job and, if the request (or ``wait``) says so, wait up to ``timeout``; return its record.

    Raises:
        AsgardError: See ``start_job``; and the job's own domain error when it failed while awaited.
    """
    started = await start_job(kind, request, settings, job_id)
    if not (started.wait if wait is None else wait):
        return started.record
    record = await wait_job(started, settings, timeout)
    if record.status == "failed" and record.error_type not in (None, "JobLost", "JobFailed"):
        err = error_from_record(record)
        if not isinstance(err, JobFailed):
            raise err
    return record


async def get_job(settings: Settings, job_id: str, kind: JobKind | str | None = None) -> JobRecord:
    """A job's record, reconciled with Ray's state when it is not finished (a queued one with its position).

    Raises:
        NotFound: No such job.
    """
    store = JobStore(settings)
    kind_name = get_kind(kind).name if kind is not None else None
    kinds = (kind_name,) if kind_name else _guess_order(job_id)
    record = await asyncio.to_thread(store.locate, job_id, kinds)
    if record is None:
        what = f"{kind_name.replace('_', ' ')} job" if kind_name else "job"
        raise NotFound(f"no {what} {job_id!r}; use the job_id that the submitting request returned")
    if record.done:
        return record
    try:
        return await _reconciled(settings, get_kind(record.kind) if record.kind in kind_names() else record.kind, job_id)
    except ServiceUnavailable:
        return record  # the supervisor is restarting: its loop reconciles soon


async def cancel_job(settings: Settings, job_id: str, kind: JobKind | str | None = None) -> JobRecord:
    """Cancel a queued job (it never runs); a finished one is answered as it is.

    Raises:
        NotFound: No such job.
        Conflict: The job is running.
    """
    record = await get_job(settings, job_id, kind)
    if record.done:
        return record
    return JobRecord.model_validate(await _call(settings, "cancel", record.kind, job_id, settings))


def _guess_order(job_id: str) -> tuple[str, ...]:
    kinds = registered_kinds()
    first = [name for name, k in kinds.items() if job_id.startswith(f"{k.id_prefix}-")]
    return (*first, *(name for name in kinds if name not in first))


async def list_jobs(
    settings: Settings, kind: str | None = None, limit: int = 100, cursor: str | None = None
) -> tuple[list[JobRecord], str | None]:
    """One page of records, newest first, and the next page's cursor (records read: at most ``limit``)."""
    return await asyncio.to_thread(list_jobs_sync, settings, kind, limit, cursor)


# --- sync twins (jobs/*.py, tests) --------------------------------------------------------------------
def run_sync(coro: Coroutine[Any, Any, T] | Awaitable[T]) -> T:
    """Run a coroutine to completion from sync code (in a fresh thread if a loop already runs here)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()  # type: ignore[arg-type]


def start_job_sync(kind: JobKind | str, request: Any, settings: Settings, job_id: str | None = None) -> Started:
    """``start_job`` for sync callers."""
    return run_sync(start_job(kind, request, settings, job_id))


def wait_job_sync(started: Started, settings: Settings, timeout: float | None = None) -> JobRecord:
    """``wait_job`` for sync callers."""
    return run_sync(wait_job(started, settings, timeout))


def submit_job_sync(
    kind: JobKind | str, request: Any, settings: Settings, job_id: str | None = None, wait: bool | None = None, timeout: float | None = None
) -> JobRecord:
    """``submit_job`` for sync callers (``timeout=float("inf")`` waits as long as the job runs)."""
    return run_sync(submit_job(kind, request, settings, job_id, wait, timeout))


def get_job_sync(settings: Settings, job_id: str, kind: JobKind | str | None = None) -> JobRecord:
    """``get_job`` for sync callers."""
    return run_sync(get_job(settings, job_id, kind))


def list_jobs_sync(
    settings: Settings, kind: str | None = None, limit: int = 100, cursor: str | None = None
) -> tuple[list[JobRecord], str | None]:
    """``list_jobs`` for sync callers."""
    return JobStore(settings).page(kind, limit, cursor, kinds=kind_names())


def run_job(kind: JobKind | str, request: Any, job_id: str | None = None, settings: Settings | None = None) -> dict[str, Any]:
    """Run one job to its end from a driver (``jobs/*.py``) and return its result.

    The job runs as the supervisor's task ``<kind>:<job_id>`` like an HTTP one, so it is listed,
    admitted, queued and reconciled the same way; this driver only waits for it.

    Raises:
        AsgardError: A bad request (4xx), the job's own domain error, or ``JobFailed`` with the cause.
    """
    settings = settings or Settings()
    record = submit_job_sync(kind, request, settings, job_id, wait=True, timeout=float("inf"))
    if record.status != "completed" or record.result is None:
        raise error_from_record(record)
    log.info("job %s (%s) completed", record.job_id, record.kind)
    return record.result
