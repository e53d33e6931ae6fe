"""The jobs core: one record shape, one way to start, wait, read and list, for every kind of work.

Training, batch scoring and drift computation (and later kinds) are job kinds (``JobKind``:
``prepare``, ``run``, ``view``). A named, detached supervisor actor (``asgard-jobs``) owns their
Ray tasks, admits at most a set number per kind, and reconciles records with Ray's state, so
no job stays "running" after its task is gone. HTTP routes, the CLI and ``jobs/*.py`` are thin
adapters over ``submit_job`` / ``get_job`` / ``list_jobs`` (async) and their ``*_sync`` twins.
"""

from asgard_ray.jobs.core import (
    JobFailed,
    Started,
    describe_failure,
    domain_error,
    get_job,
    get_job_sync,
    get_supervisor,
    list_jobs,
    list_jobs_sync,
    run_job,
    run_sync,
    run_tracked,
    start_job,
    start_job_sync,
    submit_job,
    submit_job_sync,
    wait_job,
    wait_job_sync,
)
from asgard_ray.jobs.kinds import JobKind, Plan, get_kind, register_kind
from asgard_ray.jobs.records import (
    JOB_KINDS,
    TERMINAL,
    JobKindName,
    JobRecord,
    JobStatus,
    JobStore,
    new_job_id,
)
from asgard_ray.jobs.supervisor import SUPERVISOR_NAME, JobSupervisor

__all__ = [
    "JOB_KINDS",
    "SUPERVISOR_NAME",
    "TERMINAL",
    "JobFailed",
    "JobKind",
    "JobKindName",
    "JobRecord",
    "JobStatus",
    "JobStore",
    "JobSupervisor",
    "Plan",
    "Started",
    "describe_failure",
    "domain_error",
    "get_job",
    "get_job_sync",
    "get_kind",
    "get_supervisor",
    "list_jobs",
    "list_jobs_sync",
    "new_job_id",
    "register_kind",
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
