"""The jobs core: start a job of any kind, wait for it, read it (reconciled), list them.

Every way in is a thin adapter over these functions: HTTP routes use the ``async`` ones (they
``await`` Ray refs with a timeout and run blocking calls in threads, so the event loop stays
free), ``jobs/*.py`` and tests use the ``*_sync`` twins. The steps are the same for every kind:

1. ``find`` an earlier run of a requested job id: a completed one is answered as it is; a running
   one is a ``Conflict`` (after reconciling it, so a dead one does not block its id);
2. ``prepare`` the request on the caller (fast 4xx, before any job exists);
3. the supervisor records and starts the task (admission limit, one run per id);
4. wait (or not) and map a failure back to the domain error.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from asgard_ray.config import Settings
from asgard_ray.errors import AsgardError, ServiceUnavailable
from asgard_ray.jobs.kinds import JobKind, get_kind
from asgard_ray.jobs.records import (
    JOB_KINDS,
    JobKindName,
    JobRecord,
    JobStore,
    new_job_id,
)
from asgard_ray.jobs.supervisor import SUPERVISOR_NAME, JobSupervisor

__all__ = [
    "JobFailed",
    "Started",
    "describe_failure",
    "domain_error",
    "get_job",
    "get_job_sync",
    "get_supervisor",
    "list_jobs",
    "list_jobs_sync",
    "run_job",
    "run_sync",
    "run_tracked",
    "start_job",
    "start_job_sync",
    "submit_job",
    "submit_job_sync",
    "wait_job",
    "wait_job_sync",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_FRAME = re.compile(r"^\s*(File \"|Traceback \(most recent call last\)|During handling|The above exception|\^+$)")
_RAISED = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)): (.+)$", re.MULTILINE)
_RAY_NAME = re.compile(r"^(ray\.|Ray|UserCodeException|ActorDiedError|WorkerCrashedError|ObjectLostError|OwnerDiedError)")
_PREFIX = {"training": "train", "batch_scoring": "batch", "monitoring": "drift", "materialize": "mat"}


class JobFailed(AsgardError):
    """A job ended ``failed`` for a reason that is not a domain error (HTTP 500 with the cause)."""


@dataclass
class Started:
    """A job the caller started (or found already completed)."""

    kind: JobKind
    record: JobRecord
    ref: Any | None
    wait: bool


# --- errors --------------------------------------------------------------------------------------
def _innermost(exc: BaseException) -> BaseException:
    """Unwrap Ray's wrappers (task errors, Ray Data's user-code errors) down to the first own exception."""
    for _ in range(20):
        nxt = getattr(exc, "cause", None)
        if not isinstance(nxt, BaseException) and type(exc).__module__.startswith("ray."):
            nxt = exc.__cause__
        if not isinstance(nxt, BaseException) or nxt is exc:
            break
        exc = nxt
    return exc


def describe_failure(exc: BaseException) -> str:
    """One clean message for a failure: the innermost cause, no traceback, no terminal codes."""
    inner = _innermost(exc)
    if isinstance(inner, AsgardError):
        return inner.message
    if type(inner).__module__.startswith("ray."):
        # Pickling drops ``__cause__``: the user's own error survives only in Ray's text. Take its last line.
        own = [m for m in _RAISED.finditer(_ANSI.sub("", str(exc))) if not _RAY_NAME.match(m.group(1))]
        if own:
            return f"{own[-1].group(1).rsplit('.', 1)[-1]}: {own[-1].group(2).strip()[:1000]}"
    text = _ANSI.sub("", str(inner))
    lines = [ln for ln in text.splitlines() if ln.strip() and not _FRAME.match(ln) and not ln.startswith("    ")]
    body = " ".join(ln.strip() for ln in lines)[:1000] or "no message"
    return f"{type(inner).__name__}: {body}"


def domain_error(exc: BaseException) -> AsgardError | None:
    """The domain error behind a Ray failure (a task's or an actor call's), or None."""
    import ray.exceptions as rex

    inner = _innermost(exc)
    if isinstance(inner, AsgardError):
        return inner
    if isinstance(exc, rex.ActorUnavailableError | rex.ActorDiedError | rex.RayActorError):
        return ServiceUnavailable("the job supervisor is restarting; retry in a few seconds", detail={"actor": SUPERVISOR_NAME})
    return None


def run_tracked(
    settings: Settings, kind: JobKindName, job_id: str, fn: Callable[..., dict[str, Any]], *args: Any, **kwargs: Any
) -> dict[str, Any]:
    """Run ``fn`` and keep the job record in step: running, then completed with its result or failed.

    Domain errors keep their type in ``error_type`` so a reader can answer with the right status.
    """
    store = JobStore(settings)
    store.update(kind, job_id, status="running")
    try:
        result = fn(*args, **kwargs)
    except Exception as exc:
        message = describe_failure(exc)
        lost = _owner_lost(settings, store, kind, job_id)
        if lost:  # Ray is stopping this task because its owner died: the error seen here is a symptom
            message = f"job {job_id} failed: {lost}; the task's last error was {message}"
        log.error("job %s failed: %s\n%s", job_id, message, traceback.format_exc())
        store.update(kind, job_id, status="failed", error=message, error_type=type(_innermost(exc)).__name__)
        raise
    store.update(kind, job_id, status="completed", result=result, error=None, error_type=None)
    return result


def _owner_lost(settings: Settings, store: JobStore, kind: JobKindName, job_id: str) -> str | None:
    """Why this task's owner is gone (the supervisor incarnation that started it), or None if it is alive.

    A worker whose owner died is stopped by Ray mid-step, and what it raises on the way out (an
    interrupted import, a closed connection) says nothing of the cause; the record should.
    """
    record = store.find(kind, job_id)
    epoch = record.owner_epoch if record is not None else None
    if not epoch:
        return None
    try:
        import ray

        info = ray.get(get_supervisor(settings).info.remote(), timeout=10)
    except Exception as exc:
        return f"its owner, the job supervisor (epoch {epoch}), is unreachable ({type(exc).__name__})"
    if info.get("epoch") != epoch:
        return f"its owner, the job supervisor, restarted (epoch {epoch} is gone, now {info.get('epoch')}); Ray stopped its task"
    return None


# --- the supervisor ------------------------------------------------------------------------------
_HANDLES: dict[str, Any] = {}


def get_supervisor(settings: Settings, *, fresh: bool = False) -> Any:
    """The supervisor actor of this namespace, created on first use (blocking: a GCS call)."""
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
    _HANDLES[ns] = actor.remote(settings)
    return _HANDLES[ns]


async def _call(settings: Settings, method: str, *args: Any) -> Any:
    """Call a supervisor method; a domain error it raised comes back as itself."""
    handle = await asyncio.to_thread(get_supervisor, settings)
    for attempt in (1, 2):
        try:
            return await getattr(handle, method).remote(*args)
        except Exception as exc:
            err = domain_error(exc)
            import ray.exceptions as rex

            if attempt == 1 and isinstance(exc, rex.ActorDiedError):  # killed for good: make a new one
                handle = await asyncio.to_thread(get_supervisor, settings, fresh=True)
                continue
            if err is not None:
                raise err from None
            raise
    raise AssertionError("unreachable")


# --- async API (routes) ----------------------------------------------------------------------------
async def start_job(kind_name: str, request: Any, settings: Settings, job_id: str | None = None) -> Started:
    """Validate ``request``, then record and start the job (or find it completed).

    Raises:
        AsgardError: From ``prepare`` (4xx), ``Conflict`` for a running job id, ``TooManyJobs`` (429).
    """
    kind = get_kind(kind_name)
    if job_id:
        existing = await asyncio.to_thread(JobStore(settings).find, kind.name, job_id)
        if existing is not None and not existing.done:
            existing = JobRecord.model_validate(await _call(settings, "reconcile", kind.name, job_id, settings))
        if existing is not None and existing.status == "completed":
            log.info("job %s already completed; answering from its record", job_id)
            return Started(kind, existing, None, True)
    plan = await asyncio.to_thread(kind.prepare, request, settings, job_id or new_job_id(kind.id_prefix))
    release = await asyncio.to_thread(kind.reserve, plan) if kind.reserve is not None else None
    try:
        out = await _call(settings, "submit", kind.name, plan, kind.limit(settings), kind.max_retries, kind.num_cpus)
    except BaseException:
        if release is not None:
            await asyncio.to_thread(release)
        raise
    ref = out["ref"][0] if out["ref"] else None
    return Started(kind, JobRecord.model_validate(out["record"]), ref, plan.wait)


async def wait_job(started: Started, timeout: float | None = None) -> JobRecord:
    """Wait up to ``timeout`` seconds (default the kind's ``wait_s``; ``inf``: no limit) for the job.

    Returns the record as it was started; read it again (``get_job``) for the outcome.

    Raises:
        AsgardError: The job's own domain error (e.g. 422 for a request the work found unusable).
    """
    if started.ref is None:
        return started.record
    limit = started.kind.wait_s if timeout is None else timeout
    try:
        await asyncio.wait_for(_as_future(started.ref), None if limit == float("inf") else limit)
    except TimeoutError:
        pass
    except Exception as exc:  # any failure: the record says what happened
        err = domain_error(exc)
        if err is not None and not isinstance(err, ServiceUnavailable):
            raise err from None
    return started.record


async def _as_future(ref: Any) -> Any:
    return await ref


async def submit_job(
    kind_name: str, request: Any, settings: Settings, job_id: str | None = None, wait: bool | None = None, timeout: float | None = None
) -> JobRecord:
    """Start a job and, if the request (or ``wait``) says so, wait up to ``timeout``; return its record.

    Raises:
        AsgardError: See ``start_job``; and the job's own domain error when it failed while awaited.
    """
    started = await start_job(kind_name, request, settings, job_id)
    if started.ref is not None and (started.wait if wait is None else wait):
        await wait_job(started, timeout)
    return await get_job(settings, started.record.job_id, kind_name)


async def get_job(settings: Settings, job_id: str, kind_name: str | None = None) -> JobRecord:
    """A job's record, reconciled with Ray's state when it says pending or running.

    Raises:
        NotFound: No such job.
    """
    store = JobStore(settings)
    kinds = (kind_name,) if kind_name else _guess_order(job_id)
    record = await asyncio.to_thread(store.locate, job_id, kinds)
    if record is None:
        from asgard_ray.errors import NotFound

        what = f"{kind_name.replace('_', ' ')} job" if kind_name else "job"
        raise NotFound(f"no {what} {job_id!r}; use the job_id that the submitting request returned")
    if record.done:
        return record
    try:
        return JobRecord.model_validate(await _call(settings, "reconcile", record.kind, job_id, settings))
    except ServiceUnavailable:
        return record  # the supervisor is restarting: its loop reconciles soon


def _guess_order(job_id: str) -> tuple[str, ...]:
    first = [k for k, p in _PREFIX.items() if job_id.startswith(f"{p}-")]
    return (*first, *(k for k in JOB_KINDS if k not in first))


async def list_jobs(
    settings: Settings, kind_name: str | None = None, limit: int = 100, cursor: str | None = None
) -> tuple[list[JobRecord], str | None]:
    """One page of records, newest first, and the next page's cursor (records read: at most ``limit``)."""
    return await asyncio.to_thread(JobStore(settings).page, kind_name, limit, cursor)


# --- sync twins (jobs/*.py, tests) --------------------------------------------------------------------
def run_sync(coro: Coroutine[Any, Any, T] | Awaitable[T]) -> T:
    """Run a coroutine to completion from sync code (in a fresh thread if a loop already runs here)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()  # type: ignore[arg-type]


def start_job_sync(kind_name: str, request: Any, settings: Settings, job_id: str | None = None) -> Started:
    """``start_job`` for sync callers."""
    return run_sync(start_job(kind_name, request, settings, job_id))


def wait_job_sync(started: Started, timeout: float | None = None) -> JobRecord:
    """``wait_job`` for sync callers."""
    return run_sync(wait_job(started, timeout))


def submit_job_sync(
    kind_name: str, request: Any, settings: Settings, job_id: str | None = None, wait: bool | None = None, timeout: float | None = None
) -> JobRecord:
    """``submit_job`` for sync callers (``timeout=float("inf")`` waits as long as the job runs)."""
    return run_sync(submit_job(kind_name, request, settings, job_id, wait, timeout))


def get_job_sync(settings: Settings, job_id: str, kind_name: str | None = None) -> JobRecord:
    """``get_job`` for sync callers."""
    return run_sync(get_job(settings, job_id, kind_name))


def list_jobs_sync(
    settings: Settings, kind_name: str | None = None, limit: int = 100, cursor: str | None = None
) -> tuple[list[JobRecord], str | None]:
    """``list_jobs`` for sync callers."""
    return JobStore(settings).page(kind_name, limit, cursor)


def run_job(kind_name: str, request: Any, job_id: str | None = None, settings: Settings | None = None) -> dict[str, Any]:
    """Run one job to its end from a driver (``jobs/*.py``) and return its result.

    The job runs as the supervisor's task ``<kind>:<job_id>`` like an HTTP one, so it is listed,
    admitted and reconciled the same way; this driver only waits for it.

    Raises:
        AsgardError: A bad request (4xx), the job's own domain error, or ``JobFailed`` with the cause.
    """
    settings = settings or Settings()
    record = submit_job_sync(kind_name, request, settings, job_id, wait=True, timeout=float("inf"))
    if record.status != "completed" or record.result is None:
        raise JobFailed(record.error or f"job {record.job_id} ended {record.status}", detail={"job_id": record.job_id})
    log.info("job %s (%s) completed", record.job_id, kind_name)
    return record.result
