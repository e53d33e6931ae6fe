"""Warm workers: long-lived processes that run small jobs in process, with their imports already done.

Why: a job of this platform is often small (the seed trains on 5 entities and scores 10 rows). On
the cluster path such a job pays for Ray Data's or the trials' process start and imports (pandas,
pyarrow, the ML frameworks, MLflow) every time. A warm worker has imported what the registered
kinds asked for (``JobKind.preload``) and rehearsed their first job offline (``JobKind.rehearse``),
so a small job costs what its work costs.

- The supervisor owns a pool of them (``ASGARD_WARM_WORKERS``) and sends a job to a free one when
  the kind's ``prepare`` marked it small (``Plan.warm``); a warm-eligible job waits in its kind's
  queue for a free warm worker rather than taking the cluster path.
- A warm worker asks for no CPU: small work is short, and a reserved CPU would take a slot from the
  trials and Ray Data tasks of large jobs on a small cluster.
- A crashed warm worker fails its job with the cause, like a crashed task (the kind's retries are for
  the cluster path), and restarts; the next small job waits for its imports.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from asgard_ray.heap import freeze_startup_heap
from asgard_ray.jobs.kinds import JobKind, Plan
from asgard_ray.jobs.tracked import execute

__all__ = ["BASE_PRELOAD", "WarmWorker"]

log = logging.getLogger(__name__)

BASE_PRELOAD: Final = ("numpy", "pandas", "pyarrow.parquet", "pyarrow.dataset")
"""What every small job imports, whatever its kind."""


class WarmWorker:
    """One warm worker (wrapped with ``ray.remote`` by the supervisor)."""

    def __init__(self, preload: Sequence[str] = (), rehearsals: Sequence[Callable[[], None]] = ()) -> None:
        os.environ.setdefault("MPLBACKEND", "Agg")
        t = time.perf_counter()
        for name in dict.fromkeys([*BASE_PRELOAD, *preload]):
            try:
                importlib.import_module(name)
            except Exception:  # a missing optional module: its first job imports (and reports) it
                log.exception("warm worker could not import %s", name)
        for rehearse in rehearsals:
            try:
                rehearse()
            except Exception:  # a rehearsal must never keep the worker from serving: the first job pays instead
                log.exception("warm worker rehearsal %s failed", getattr(rehearse, "__qualname__", rehearse))
        freeze_startup_heap("warm worker")
        self.started_s = round(time.perf_counter() - t, 3)
        self.jobs = 0
        log.info("warm worker up in %.1fs (pid %d)", self.started_s, os.getpid())

    def ready(self) -> dict[str, Any]:
        """Answer once the imports are done: the pid, the start time and the jobs run so far."""
        return {"pid": os.getpid(), "started_s": self.started_s, "jobs": self.jobs}

    def execute(self, kind: JobKind, plan: Plan) -> dict[str, Any]:
        """Run a job's body here, as the task ``<kind>:<job_id>`` would (``tracked.execute``)."""
        self.jobs += 1
        return execute(kind, dataclasses.replace(plan, path="warm"))
