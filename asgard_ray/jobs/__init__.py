"""The jobs core: one record shape, one way to start, queue, wait, read, list and cancel, for every kind of work.

Training, batch scoring, drift computation and materialization are job kinds (``JobKind``:
``prepare``, ``run``, ``view``) that their capability packages register here; the core imports
none of them. A named, detached supervisor actor (``asgard-jobs``) owns their Ray tasks, runs at
most a set number per kind with a durable FIFO queue behind them, keeps a pool of warm workers for
small jobs, and reconciles records with Ray's state, so no job stays "running" after its task is
gone. HTTP routes, the CLI and ``jobs/*.py`` are thin adapters over ``submit_job`` / ``get_job`` /
``list_jobs`` / ``cancel_job`` (async) and their ``*_sync`` twins.
"""

from asgard_ray.jobs.client import (
    Started,
    cancel_job,
    get_job,
    get_job_sync,
    get_supervisor,
    list_jobs,
    list_jobs_sync,
    run_job,
    run_sync,
    start_job,
    start_job_sync,
    submit_job,
    submit_job_sync,
    supervisor_info,
    wait_job,
    wait_job_sync,
)
from asgard_ray.jobs.failures import JobFailed, describe_failure, domain_error, error_from_record
from asgard_ray.jobs.kinds import ExecutionPath, JobKind, Plan, get_kind, kind_names, register_kind, registered_kinds
from asgard_ray.jobs.records import SUPERVISOR_NAME, TERMINAL, JobRecord, JobStatus, JobStore, new_job_id
from asgard_ray.jobs.tracked import run_tracked

__all__ = [
    "SUPERVISOR_NAME",
    "TERMINAL",
    "ExecutionPath",
    "JobFailed",
    "JobKind",
    "JobRecord",
    "JobStatus",
    "JobStore",
    "Plan",
    "Started",
    "cancel_job",
    "describe_failure",
    "domain_error",
    "error_from_record",
    "get_job",
    "get_job_sync",
    "get_kind",
    "get_supervisor",
    "kind_names",
    "list_jobs",
    "list_jobs_sync",
    "new_job_id",
    "register_kind",
    "registered_kinds",
    "run_job",
    "run_sync",
    "run_tracked",
    "start_job",
    "start_job_sync",
    "submit_job",
    "submit_job_sync",
    "supervisor_info",
    "wait_job",
    "wait_job_sync",
]
