"""The body of every job's Ray task: run the kind's work and keep its record in step.

``execute`` is what the task ``<kind>:<job_id>`` (or a warm worker) runs: the record goes
``running``, then ``completed`` with the result, or ``failed`` with one clean line, the error's class
name and detail (so a waiting caller gets the same domain error, ``failures.error_from_record``).
A task whose owner died is stopped by Ray mid-step, and what it raises on the way out says nothing
of the cause; the record then names the supervisor that is gone.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any, cast

from asgard_ray.config import Settings
from asgard_ray.errors import AsgardError
from asgard_ray.jobs.failures import describe_failure, innermost
from asgard_ray.jobs.kinds import JobKind, Plan
from asgard_ray.jobs.records import SUPERVISOR_NAME, JobStore

__all__ = ["execute", "run_tracked"]

log = logging.getLogger(__name__)


def run_tracked(settings: Settings, kind: str, job_id: str, fn: Callable[..., dict[str, Any]], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Run ``fn`` and keep the job record in step: running, then completed with its result or failed.

    Domain errors keep their type in ``error_type`` (and their detail) so a reader can answer with the right status.
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
        inner = innermost(exc)
        detail = inner.detail if isinstance(inner, AsgardError) and isinstance(inner.detail, dict) else None
        store.update(kind, job_id, status="failed", error=message, error_type=type(inner).__name__, error_detail=detail)
        raise
    store.update(kind, job_id, status="completed", result=result, error=None, error_type=None, error_detail=None)
    return result


def execute(kind: JobKind, plan: Plan) -> dict[str, Any]:
    """The body of the Ray task ``<kind>:<job_id>``: run the kind's work with its record kept in step."""
    return run_tracked(plan.settings, kind.name, plan.job_id, kind.run, plan)


def _owner_lost(settings: Settings, store: JobStore, kind: str, job_id: str) -> str | None:
    """Why this task's owner is gone (the supervisor incarnation that started it), or None if it is alive."""
    record = store.find(kind, job_id)
    epoch = record.owner_epoch if record is not None else None
    if not epoch:
        return None
    try:
        import ray

        supervisor = ray.get_actor(SUPERVISOR_NAME, namespace=settings.ray_namespace)
        info = cast(dict[str, Any], ray.get(supervisor.info.remote(), timeout=10))
    except Exception as exc:
        return f"its owner, the job supervisor (epoch {epoch}), is unreachable ({type(exc).__name__})"
    if info.get("epoch") != epoch:
        return f"its owner, the job supervisor, restarted (epoch {epoch} is gone, now {info.get('epoch')}); Ray stopped its task"
    return None
