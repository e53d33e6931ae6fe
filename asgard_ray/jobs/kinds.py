"""Job kinds: what each kind of tracked work declares, and the registry that finds them.

A kind says how to ``prepare`` a request on the caller (fast checks, 4xx before any job exists),
how to ``run`` the plan in the job's Ray task, and how to ``view`` a record in the API. The
capability packages declare their kinds (``training.service.TRAINING_JOB``, ...); this registry
imports them lazily by name, so importing ``asgard_ray.jobs`` loads no ML library.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from asgard_ray.jobs.records import JobKindName, JobRecord

if TYPE_CHECKING:
    from asgard_ray.config import Settings

__all__ = ["ExecutionPath", "JobKind", "Plan", "get_kind", "register_kind"]

ExecutionPath = Literal["warm", "cluster"]
"""Where a job ran: on a warm worker in process, or as a Ray task on the cluster (Tune / Ray Data)."""


@dataclass
class Plan:
    """A validated request, ready to run as job ``job_id``.

    Attributes:
        job_id: The job's id.
        settings: Settings the job runs with.
        payload: What the kind's ``run`` needs (kind-specific, picklable).
        request: The request as recorded in the job record.
        progress: The record's initial progress (what the views show while it runs).
        links: Links recorded with the job.
        wait: Whether a caller that does not say otherwise waits for the result.
        warm: Whether the work is small enough for a warm worker (``prepare`` decides, from the request).
        path: Where it ran: ``warm`` (a warm worker, in process) or ``cluster`` (a Ray task that fans
            out to Tune trials or Ray Data); the supervisor sets it when it starts the job.
    """

    job_id: str
    settings: Settings
    payload: Any
    request: dict[str, Any] = field(default_factory=dict)
    progress: dict[str, Any] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    wait: bool = True
    warm: bool = False
    path: ExecutionPath = "cluster"


@dataclass(frozen=True)
class JobKind:
    """One kind of tracked work.

    Attributes:
        name: The kind (records live under ``jobs/<name>/``; tasks are named ``<name>:<job_id>``).
        id_prefix: Prefix of generated ids (``train`` -> ``train-3f2a...``).
        prepare: ``(request, settings, job_id) -> Plan`` on the caller; raises ``AsgardError`` (4xx).
        run: ``(plan) -> result dict`` in the job's Ray task.
        view: ``(record) -> response model`` for the API.
        limit_setting: Settings field with the most jobs of this kind running at once.
        default_limit: Used when the settings have no such field.
        max_retries: Ray retries of the task after a crash; non-zero only where ``run`` is idempotent.
        num_cpus: CPUs the job task itself asks for (it mostly orchestrates).
        wait_s: How long a waiting caller waits before answering with the running job.
        on_failed: ``(record, settings) -> None`` cleanup when the reconciler fails a dead job.
        reserve: ``(plan) -> release`` on the caller, after ``prepare`` and before the job is submitted:
            claims what the job will hold exclusively (an output path's lease), so a second request
            gets its 409 at once instead of a job that fails later; ``release`` undoes it when the
            submission is refused (429) or fails.
    """

    name: JobKindName
    id_prefix: str
    prepare: Callable[[Any, Settings, str], Plan]
    run: Callable[[Plan], dict[str, Any]]
    view: Callable[[JobRecord], BaseModel]
    limit_setting: str
    default_limit: int = 2
    max_retries: int = 0
    num_cpus: float = 0
    wait_s: float = 300.0
    on_failed: Callable[[JobRecord, Settings], None] | None = None
    reserve: Callable[[Plan], Callable[[], None]] | None = None

    def limit(self, settings: Settings) -> int:
        """The admission limit for this kind under ``settings``."""
        return max(1, int(getattr(settings, self.limit_setting, self.default_limit)))


_BUILTIN: dict[str, str] = {
    "training": "asgard_ray.training.service:TRAINING_JOB",
    "batch_scoring": "asgard_ray.scoring.service:SCORING_JOB",
    "monitoring": "asgard_ray.monitoring.compute:DRIFT_JOB",
    "materialize": "asgard_ray.serving.materialize:MATERIALIZE_JOB",
}
_KINDS: dict[str, JobKind] = {}


def register_kind(kind: JobKind) -> JobKind:
    """Add (or replace) a kind; returns it, so a module can write ``KIND = register_kind(JobKind(...))``."""
    _KINDS[kind.name] = kind
    return kind


def get_kind(name: str) -> JobKind:
    """The kind called ``name`` (built-in kinds are imported on first use).

    Raises:
        KeyError: No such kind.
    """
    if name not in _KINDS and name in _BUILTIN:
        module, attr = _BUILTIN[name].split(":")
        register_kind(getattr(importlib.import_module(module), attr))
    return _KINDS[name]
