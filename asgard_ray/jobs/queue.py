"""The durable FIFO of jobs waiting for a slot of their kind.

Past a kind's running limit a job waits here instead of being refused. Each waiting job is one
object, ``<jobs state>/_queue/<kind>/<seq>_<job_id>``, whose key sorts in arrival order (``seq``
is a zero-padded arrival time, made strictly increasing per process) and whose body is the job's
``Plan`` (pickled by Ray's serializer, without its ``Settings``: secrets never go to storage, and
the supervisor that runs the job supplies its own). A supervisor that restarts lists the prefix and
takes the jobs up in the same order; a job leaves the queue when it starts or is cancelled.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, cast

from asgard_ray.config import Settings
from asgard_ray.jobs.kinds import Plan

__all__ = ["JobQueue", "Waiting"]

log = logging.getLogger(__name__)

_SEQ_LOCK = threading.Lock()
_LAST_SEQ = [0]


def _next_seq() -> int:
    """Microseconds since the epoch, strictly increasing within this process."""
    with _SEQ_LOCK:
        seq = max(time.time_ns() // 1000, _LAST_SEQ[0] + 1)
        _LAST_SEQ[0] = seq
        return seq


@dataclass(eq=False)
class Waiting:
    """One queued job: its kind, id, arrival order and plan (``since``: when this process saw it arrive)."""

    kind: str
    job_id: str
    seq: int
    plan: Plan
    since: float = field(default_factory=time.monotonic)


class JobQueue:
    """Read and write the queued jobs of every kind on S3."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        root = settings.state_uri("jobs", "_queue").removeprefix("s3://")
        self._bucket, _, self._root = root.partition("/")

    def _s3(self) -> Any:
        from asgard_ray.storage import s3_client

        return s3_client(self.settings)

    def _key(self, kind: str, seq: int, job_id: str) -> str:
        return f"{self._root}/{kind}/{seq:017d}_{job_id}"

    def push(self, kind: str, plan: Plan) -> Waiting:
        """Store a job at the tail of its kind's queue (one PUT); return its entry."""
        from ray import cloudpickle

        seq = _next_seq()
        body = cloudpickle.dumps(dataclasses.replace(plan, settings=cast(Any, None)))
        self._s3().put_object(Bucket=self._bucket, Key=self._key(kind, seq, plan.job_id), Body=body)
        return Waiting(kind, plan.job_id, seq, plan)

    def remove(self, entry: Waiting) -> None:
        """Drop an entry (the job started or was cancelled)."""
        self._s3().delete_object(Bucket=self._bucket, Key=self._key(entry.kind, entry.seq, entry.job_id))

    def load(self) -> list[Waiting]:
        """Every stored entry, oldest first, with ``settings`` filled in; an unreadable one is dropped and logged."""
        from ray import cloudpickle

        s3 = self._s3()
        out: list[Waiting] = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=self._root + "/"):
            for obj in page.get("Contents", []):
                kind, _, leaf = obj["Key"][len(self._root) + 1 :].partition("/")
                seq_text, _, job_id = leaf.partition("_")
                try:
                    plan = cloudpickle.loads(s3.get_object(Bucket=self._bucket, Key=obj["Key"])["Body"].read())
                    out.append(Waiting(kind, job_id, int(seq_text), dataclasses.replace(plan, settings=self.settings)))
                except Exception as exc:  # an entry of an older release, or damaged: it cannot run
                    log.error("queued job %s (%s) cannot be read back (%s); dropping it", job_id, kind, exc)
                    s3.delete_object(Bucket=self._bucket, Key=obj["Key"])
        return sorted(out, key=lambda w: w.seq)
