"""Job kinds: what each kind of tracked work declares, and the registry that finds them by name.

The jobs core knows no kind. A capability declares its kind once, at import, with
``register_kind(JobKind(...))``: how to ``prepare`` a request on the caller (fast checks, a 4xx
before any job exists), how to ``run`` the plan in the job's Ray task, how to ``view`` a record in
the API, the settings that bound it, and what a warm worker must import (and rehearse) so that
its first small job is as fast as the next. The core looks kinds up by name when it reads records;
callers that start jobs pass the ``JobKind`` itself (or its name, once its module was imported).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from asgard_ray.jobs.records import KIND_NAME, JobRecord

if TYPE_CHECKING:
    from asgard_ray.config import Settings

__all__ = ["ExecutionPath", "JobKind", "Plan", "get_kind", "kind_names", "register_kind", "registered_kinds"]

ExecutionPath = Literal["warm", "cluster"]
"""Where a job ran: on a warm worker in process, or as a Ray task on the cluster (trials, Ray Data)."""


@dataclass
class Plan:
    """A validated request, ready to run as job ``job_id``.

    Attributes:
        job_id: The job's id.
        settings: Settings the job runs with (a queued plan is stored without them).
        payload: What the kind's ``run`` needs (kind-specific, picklable).
        request: The request as recorded in the job record.
        progress: The record's initial progress (what the views show while it runs).
        links: Links recorded with the job.
        wait: Whether a caller that does not say otherwise waits for the result.
        warm: Whether the work is small enough for a warm worker (``prepare`` decides, from the request).
        path: Where it ran: ``warm`` (a warm worker, in process) or ``cluster`` (a Ray task that fans
            out to trials or Ray Data); the supervisor sets it when it starts the job.
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


def _same(record: JobRecord) -> JobRecord:
    return record


@dataclass(frozen=True)
class JobKind:
    """One kind of tracked work.

    Attributes:
        name: The kind (records live under ``jobs/<name>/``; tasks are named ``<name>:<job_id>``).
        id_prefix: Prefix of generated ids (``train`` -> ``train-3f2a...``).
        prepare: ``(request, settings, job_id) -> Plan`` on the caller; raises ``AsgardError`` (4xx).
        run: ``(plan) -> result dict`` in the job's Ray task.
        view: ``(record) -> response model`` for the API (default: the record).
        settings_key: Suffix of the kind's settings: ``ASGARD_MAX_RUNNING_JOBS_<KEY>`` (jobs running at
            once) and ``ASGARD_MAX_QUEUED_JOBS_<KEY>`` (jobs waiting behind them); default the name. A kind
            whose settings do not exist runs with ``default_limit`` and ``default_queue``.
        default_limit: Jobs of the kind running at once when there is no such setting.
        default_queue: Jobs of the kind waiting when there is no such setting.
        max_retries: Ray retries of the task after a crash; non-zero only where ``run`` is idempotent.
        num_cpus: CPUs the job task itself asks for (it mostly orchestrates).
        wait_s: How long a waiting caller waits before answering with the running (or queued) job.
        on_failed: ``(record, settings) -> None`` cleanup when a job fails outside ``run`` or is cancelled.
        reserve: ``(plan) -> release`` on the caller, after ``prepare`` and before the job is submitted:
            claims what the job will hold exclusively (an output path's lease), so a second request
            gets its 409 at once instead of a job that fails later; ``release`` undoes it when the
            submission is refused (429) or fails.
        preload: Modules a warm worker imports at start for this kind's small jobs.
        rehearse: Run once by a warm worker after its imports (no server): what a first small job
            would otherwise do for the first time (render a figure, save a model).
    """

    name: str
    id_prefix: str
    prepare: Callable[[Any, Settings, str], Plan]
    run: Callable[[Plan], dict[str, Any]]
    view: Callable[[JobRecord], BaseModel] = _same
    settings_key: str = ""
    default_limit: int = 2
    default_queue: int = 1000
    max_retries: int = 0
    num_cpus: float = 0
    wait_s: float = 300.0
    on_failed: Callable[[JobRecord, Settings], None] | None = None
    reserve: Callable[[Plan], Callable[[], None]] | None = None
    preload: tuple[str, ...] = ()
    rehearse: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        if not re.match(KIND_NAME, self.name):
            raise ValueError(f"job kind name {self.name!r} must match {KIND_NAME}")

    @property
    def limit_setting(self) -> str:
        """The ``Settings`` field with the most jobs of this kind running at once."""
        return f"asgard_max_running_jobs_{self.settings_key or self.name}"

    @property
    def queue_setting(self) -> str:
        """The ``Settings`` field with the most jobs of this kind waiting in its queue."""
        return f"asgard_max_queued_jobs_{self.settings_key or self.name}"

    def limit(self, settings: Settings) -> int:
        """The running limit for this kind under ``settings``."""
        return max(1, int(getattr(settings, self.limit_setting, self.default_limit)))

    def queue_limit(self, settings: Settings) -> int:
        """The queue bound for this kind under ``settings`` (0: no queue, a full kind refuses at once)."""
        return max(0, int(getattr(settings, self.queue_setting, self.default_queue)))


_KINDS: dict[str, JobKind] = {}


def register_kind(kind: JobKind) -> JobKind:
    """Add (or replace) a kind; returns it, so a module can write ``KIND = register_kind(JobKind(...))``."""
    _KINDS[kind.name] = kind
    return kind


def get_kind(kind: str | JobKind) -> JobKind:
    """The kind called ``kind`` (a ``JobKind`` is returned as it is, and registered).

    Raises:
        KeyError: No kind of that name was registered in this process (its module was never imported).
    """
    if isinstance(kind, JobKind):
        return _KINDS.setdefault(kind.name, kind)
    try:
        return _KINDS[kind]
    except KeyError:
        raise KeyError(f"no job kind {kind!r} is registered here (known: {', '.join(sorted(_KINDS)) or 'none'})") from None


def registered_kinds() -> dict[str, JobKind]:
    """Every kind registered in this process, by name."""
    return dict(_KINDS)


def kind_names() -> tuple[str, ...]:
    """The registered kinds' names."""
    return tuple(_KINDS)
