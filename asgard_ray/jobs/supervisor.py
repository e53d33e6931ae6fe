"""The job supervisor: a named, detached Ray actor that admits, queues, owns and reconciles every job.

Why an actor and not Ray Jobs: a job of this platform is usually small (the seed trains on 5
entities and scores 10 rows), so interactive speed matters. Ray Jobs start a new driver process per
job (a Python start, imports, ``ray.init``: seconds each); a warm actor submits a named task
(``<kind>:<job_id>``, in the dashboard) in milliseconds, on workers Ray already keeps warm. The owner
must not be the Serve replica (a replica restart would kill its tasks): this actor is detached,
restarts on failure (``max_restarts=-1``) and asks for no CPU.

Admission (per kind, from the kind's settings):

- at most ``ASGARD_MAX_RUNNING_JOBS_<KIND>`` run at once; past it a job waits in its kind's FIFO
  queue (``asgard_ray.jobs.queue``, durable on S3, so a restarted supervisor keeps the order), with
  the record ``queued`` and its position; only a full queue (``ASGARD_MAX_QUEUED_JOBS_<KIND>``)
  answers ``TooManyJobs`` (429, ``Retry-After`` estimated from the queue and the kind's recent runs);
- a small job (``plan.warm``) runs on a free warm worker of the pool (``ASGARD_WARM_WORKERS``); it
  waits for one rather than taking the slow cluster path, unless every warm worker is broken;
- one run per job id: a job id that is running or queued here is a ``Conflict`` (409);
- a queued job can be cancelled (``cancel``); it then never runs and its kind's ``on_failed``
  releases what its submission claimed.

Ownership and reconciliation:

- The supervisor submits each job task and awaits it; when the task ends without having written a
  terminal record (worker killed, out of memory, node lost), the supervisor marks it ``failed`` with
  the cause.
- Each incarnation has an ``epoch``. Ray kills the tasks of a dead owner, so a record that says
  ``pending``/``running`` under another epoch, or under this epoch but with no live task here, is
  dead: reading it (``reconcile``) or the background loop (every few seconds, over the
  ``jobs/_running/`` markers) marks it failed, with Ray's view of the task as the cause when the
  state API has one, and calls the kind's ``on_failed`` cleanup.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from asgard_ray import metrics
from asgard_ray.config import Settings
from asgard_ray.errors import Conflict, NotFound, TooManyJobs
from asgard_ray.jobs.failures import describe_failure
from asgard_ray.jobs.kinds import JobKind, Plan
from asgard_ray.jobs.queue import JobQueue, Waiting
from asgard_ray.jobs.records import JobRecord, JobStore
from asgard_ray.jobs.tracked import execute

__all__ = ["PUMP_EVERY_S", "RECONCILE_EVERY_S", "WARM_WAIT_S", "JobSupervisor", "task_state"]

log = logging.getLogger(__name__)

RECONCILE_EVERY_S: Final = 5.0
PUMP_EVERY_S: Final = 0.5
"""How often queued jobs are looked at again without an event (a warm worker that became ready)."""
WARM_WAIT_S: Final = 30.0
"""Longest a small job waits for a warm worker while its kind has room; then it takes the cluster path."""


def task_state(name: str, timeout: float = 5.0) -> str | None:
    """Ray's view of the last task called ``name`` (state and error), or None if unknown."""
    try:
        from ray.util.state import list_tasks

        tasks = list_tasks(filters=[("name", "=", name)], limit=20, timeout=int(timeout), raise_on_missing_output=False)
    except Exception as exc:  # the state API is best effort: the dashboard may be down
        log.debug("state API unavailable for %s: %s", name, exc)
        return None
    if not tasks:
        return None
    last = tasks[-1]
    state = getattr(last, "state", None)
    error = getattr(last, "error_type", None)
    message = (getattr(last, "error_message", None) or "").strip().splitlines()
    text = f"Ray task {name} is {state}"
    if error:
        text += f" ({error}{': ' + message[-1][:300] if message else ''})"
    return text


@dataclass
class _Warm:
    """A warm worker: its handle, the ref that resolves once its imports are done, and its job."""

    handle: Any
    ready_ref: Any
    job_id: str | None = None
    ready: bool = False
    broken: str | None = None
    pid: int | None = None

    def restarted(self) -> None:
        """Its process died (Ray restarts it): no job goes to it until its imports are done again."""
        if self.ready:
            self.ready, self.ready_ref = False, self.handle.ready.remote()

    def free(self) -> bool:
        """Whether it can take a job now (ready, not broken, and no job of its own)."""
        import ray
        import ray.exceptions as rex

        if self.job_id is not None or self.broken:
            return False
        if not self.ready:
            done, _ = ray.wait([self.ready_ref], timeout=0)
            if not done:
                return False
            try:
                self.pid = ray.get(self.ready_ref, timeout=1)["pid"]
            except Exception as exc:  # it could not start: small jobs take the cluster path
                if isinstance(exc, rex.ActorUnavailableError):  # restarting: ask again
                    self.ready_ref = self.handle.ready.remote()
                    return False
                self.broken = f"{type(exc).__name__}: {exc}"[:500]
                log.warning("warm worker did not start; small jobs run on the cluster path: %s", self.broken)
                return False
            self.ready = True
        return True

    async def alive(self, timeout: float = 5.0) -> bool:
        """Whether its process answers now (one round trip, about a millisecond).

        A worker that died while idle (killed, out of memory) is otherwise noticed only by the next job
        sent to it, which then fails with "The actor is restarting" though it never ran.
        """
        try:
            await asyncio.wait_for(_as_future(self.handle.ready.remote()), timeout)
            return True
        except TimeoutError:
            log.warning("warm worker (pid %s) did not answer in %.0f s; its job waits for another", self.pid, timeout)
            return False
        except Exception as exc:  # a failed ping never fails the job
            log.warning("warm worker (pid %s) did not answer (%s); its job waits for another", self.pid, type(exc).__name__)
            if _actor_lost(exc):
                self.restarted()
            return False


@dataclass
class _Active:
    kind: str
    settings: Settings
    started: float = field(default_factory=time.monotonic)
    ref: Any = None
    warm: _Warm | None = None


async def _as_future(ref: Any) -> Any:
    return await ref


def _actor_lost(exc: BaseException) -> bool:
    import ray.exceptions as rex

    return isinstance(exc, rex.ActorDiedError | rex.ActorUnavailableError)


def _settings_key(settings: Settings) -> tuple[str | None, str]:
    return settings.s3_endpoint, settings.s3_bucket


class JobSupervisor:
    """Admit, queue, own, watch and reconcile job tasks (wrapped with ``ray.remote`` by ``client.get_supervisor``).

    Args:
        settings: The platform's settings (the queue it restores lives where they say).
        kinds: The registered job kinds of the process that created it; callers add theirs on every call.
    """

    def __init__(self, settings: Settings, kinds: dict[str, JobKind]) -> None:
        self.epoch = uuid.uuid4().hex[:12]
        self.settings = settings
        self.kinds = dict(kinds)
        self.active: dict[str, _Active] = {}
        self.queues: dict[str, collections.deque[Waiting]] = collections.defaultdict(collections.deque)
        self.waiting: dict[str, Waiting] = {}
        self.finished: dict[str, asyncio.Event] = {}
        self.durations: dict[str, collections.deque[float]] = collections.defaultdict(lambda: collections.deque(maxlen=20))
        self._settings: dict[tuple[str | None, str], Settings] = {_settings_key(settings): settings}
        preload = tuple(dict.fromkeys(m for k in self.kinds.values() for m in k.preload))
        rehearsals = tuple(k.rehearse for k in self.kinds.values() if k.rehearse is not None)
        self.warm = [self._start_warm(preload, rehearsals) for _ in range(settings.warm_workers)]
        self._pump: asyncio.Task[None] | None = None
        self._admission_lock: asyncio.Lock | None = None
        self._restored = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="asgard-jobs-reconcile", daemon=True)
        self._thread.start()
        log.info("job supervisor up, epoch %s, kinds %s, %d warm worker(s)", self.epoch, sorted(self.kinds), len(self.warm))

    # --- calls ----------------------------------------------------------------------------------
    async def info(self) -> dict[str, Any]:
        """The epoch, the jobs running and queued here per kind, and the warm workers."""
        self._ensure_pump()
        counts: dict[str, int] = {}
        for a in self.active.values():
            counts[a.kind] = counts.get(a.kind, 0) + 1
        warm = []
        for w in self.warm:
            w.free()  # refreshes ``ready`` / ``broken``
            warm.append({"ready": w.ready, "job_id": w.job_id, "broken": w.broken, "pid": w.pid})
        return {
            "epoch": self.epoch,
            "running": counts,
            "queued": {k: len(q) for k, q in self.queues.items() if q},
            "job_ids": sorted(self.active),
            "warm_workers": warm,
        }

    async def submit(self, kind: JobKind, plan: Plan) -> dict[str, Any]:
        """Start job ``plan.job_id`` now, or queue it behind its kind's running jobs; answer its record.

        An earlier, completed run of the same id is answered as it is.

        Raises:
            Conflict: The job id is running or queued.
            TooManyJobs: The kind's queue is full.
        """
        self._ensure_pump()
        await self._restore()
        self.kinds[kind.name] = kind
        job_id = plan.job_id
        self._settings.setdefault(_settings_key(plan.settings), plan.settings)
        previous = await asyncio.to_thread(JobStore(plan.settings).find, kind.name, job_id)
        if previous is not None and previous.status == "completed" and job_id not in self.active:
            return previous.model_dump(mode="json")
        async with self._admission:  # one decision at a time: the limits hold under any concurrency
            if job_id in self.active or job_id in self.waiting:
                state = "running" if job_id in self.active else "queued"
                raise Conflict(
                    f"job {job_id} is still {state}; wait for it to finish or use another job_id",
                    detail={"job_id": job_id, "status": state},
                )
            queue = self.queues[kind.name]
            bound = kind.queue_limit(plan.settings)
            runs_now = not queue and self._running(kind.name) < kind.limit(plan.settings) and self._warm_ok(plan)
            if not runs_now and len(queue) >= bound:
                raise TooManyJobs(
                    f"{len(queue)} {kind.name.replace('_', ' ')} job(s) are queued, the limit "
                    f"(setting {kind.queue_setting.upper()}); retry later",
                    detail={"kind": kind.name, "queued": len(queue), "queue_limit": bound, "running": self._running(kind.name)},
                    retry_after=self._retry_after(kind, plan.settings),
                )
            self.finished[job_id] = asyncio.Event()
            try:
                record = await (self._start(kind, plan, fresh=True) if runs_now else self._enqueue(kind, plan))
            except BaseException:
                self._finished(job_id)
                raise
        return record.model_dump(mode="json")

    async def wait(self, job_id: str, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a running or queued job to end; whether it has (unknown: True)."""
        self._ensure_pump()
        await self._restore()
        event = self.finished.get(job_id)
        if event is None:
            return True
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def cancel(self, kind_name: str, job_id: str, settings: Settings) -> dict[str, Any]:
        """Cancel a queued job: it never runs, its record says ``cancelled``; answer the record.

        Raises:
            Conflict: The job is running (only a queued job can be cancelled).
            NotFound: No such job.
        """
        await self._restore()
        entry = self.waiting.pop(job_id, None)
        if entry is None:
            if job_id in self.active:
                raise Conflict(
                    f"job {job_id} is running; only a queued job can be cancelled", detail={"job_id": job_id, "status": "running"}
                )
            record = await asyncio.to_thread(JobStore(settings).find, kind_name, job_id)
            if record is None:
                raise NotFound(f"no {kind_name.replace('_', ' ')} job {job_id!r}")
            if record.status == "queued":  # a queued record with no entry here: its entry was lost
                record = await asyncio.to_thread(
                    self._fail, JobStore(settings), record, f"job {job_id} failed: its queue entry is gone", settings
                )
            if not record.done:
                raise Conflict(
                    f"job {job_id} is {record.status}; only a queued job can be cancelled",
                    detail={"job_id": job_id, "status": record.status},
                )
            return record.model_dump(mode="json")
        self.queues[entry.kind].remove(entry)
        metrics.queue_depth(entry.kind, len(self.queues[entry.kind]))
        metrics.job_state(entry.kind, "cancelled")
        store = JobStore(entry.plan.settings)
        await asyncio.to_thread(JobQueue(entry.plan.settings).remove, entry)
        record = await asyncio.to_thread(
            store.update, entry.kind, job_id, status="cancelled", error=f"job {job_id} was cancelled while queued"
        )
        kind = self.kinds.get(entry.kind)
        if kind is not None and kind.on_failed is not None:
            try:
                await asyncio.to_thread(kind.on_failed, record, entry.plan.settings)
            except Exception:
                log.exception("job %s: cleanup after cancel did not finish", job_id)
        self._finished(job_id)
        log.info("job %s (%s) cancelled while queued", job_id, entry.kind)
        return record.model_dump(mode="json")

    async def reconcile(self, kind: JobKind | str, job_id: str, settings: Settings) -> dict[str, Any]:
        """The record of ``job_id``: failed first if its task is gone; a queued one with its live position.

        Raises:
            NotFound: No such job.
        """
        self._ensure_pump()
        await self._restore()
        if isinstance(kind, JobKind):
            self.kinds[kind.name] = kind
            kind = kind.name
        self._settings.setdefault(_settings_key(settings), settings)
        entry = self.waiting.get(job_id)
        if entry is not None:
            record = await asyncio.to_thread(JobStore(settings).find, kind, job_id)
            if record is not None and record.status == "queued":
                record.progress["queue_position"] = self._position(entry)
                return record.model_dump(mode="json")
        record = await asyncio.to_thread(self._reconcile, kind, job_id, settings)
        if record is None:
            raise NotFound(f"no {kind.replace('_', ' ')} job {job_id!r}")
        return record.model_dump(mode="json")

    # --- admission ------------------------------------------------------------------------------
    @property
    def _admission(self) -> asyncio.Lock:
        """The lock every admission decision holds (made on the actor's event loop)."""
        if self._admission_lock is None:
            self._admission_lock = asyncio.Lock()
        return self._admission_lock

    def _running(self, kind_name: str) -> int:
        return sum(1 for a in self.active.values() if a.kind == kind_name)

    def _warm_ok(self, plan: Plan, since: float | None = None) -> bool:
        """Whether ``plan`` can start now as far as warm workers go.

        A small job waits for a free warm worker (much faster than the cluster path), unless every warm
        worker is broken, or it has waited ``WARM_WAIT_S`` while its kind had room (a worker stuck starting).
        """
        if not plan.warm:
            return True
        if any(w.free() for w in self.warm) or all(w.broken for w in self.warm):
            return True
        return since is not None and time.monotonic() - since > WARM_WAIT_S

    def _position(self, entry: Waiting) -> int:
        return list(self.queues[entry.kind]).index(entry) + 1 if entry in self.queues[entry.kind] else 0

    def _retry_after(self, kind: JobKind, settings: Settings) -> int:
        """Seconds until the queue has room, from the kind's recent run times (1-300)."""
        runs = self.durations[kind.name]
        mean = sum(runs) / len(runs) if runs else 5.0
        return int(min(300, max(1, math.ceil(mean / kind.limit(settings)))))

    async def _enqueue(self, kind: JobKind, plan: Plan) -> JobRecord:
        store = JobStore(plan.settings)
        entry = await asyncio.to_thread(JobQueue(plan.settings).push, kind.name, plan)
        self.queues[kind.name].append(entry)
        self.waiting[plan.job_id] = entry
        position = len(self.queues[kind.name])
        metrics.queue_depth(kind.name, position)
        try:
            record = await asyncio.to_thread(
                store.create,
                kind.name,
                plan.job_id,
                request=plan.request,
                progress={**plan.progress, "queue_position": position},
                links=plan.links,
                ray_task_name=f"{kind.name}:{plan.job_id}",
                owner_epoch=self.epoch,
                status="queued",
            )
        except BaseException:
            self._dequeue(entry)
            await asyncio.to_thread(JobQueue(plan.settings).remove, entry)
            raise
        metrics.job_state(kind.name, "queued")
        log.info("job %s (%s) queued at position %d", plan.job_id, kind.name, position)
        self._kick()
        return record

    def _dequeue(self, entry: Waiting) -> None:
        self.waiting.pop(entry.job_id, None)
        if entry in self.queues[entry.kind]:
            self.queues[entry.kind].remove(entry)
        metrics.queue_depth(entry.kind, len(self.queues[entry.kind]))

    def _take_warm(self, plan: Plan) -> _Warm | None:
        if not plan.warm:
            return None
        warm = next((w for w in self.warm if w.free()), None)
        if warm is not None:
            warm.job_id = plan.job_id  # taken before any await
        return warm

    async def _start(self, kind: JobKind, plan: Plan, *, fresh: bool, entry: Waiting | None = None) -> JobRecord:
        """Record and submit the job's task (on a warm worker when small and one is free)."""
        import ray

        job_id = plan.job_id
        warm = self._take_warm(plan)
        self.active[job_id] = _Active(kind.name, plan.settings, warm=warm)  # claimed before any await
        try:
            if warm is not None and not await warm.alive():
                warm.job_id = self.active[job_id].warm = None
                warm = self._take_warm(plan) if any(w.free() for w in self.warm) else None
                self.active[job_id].warm = warm
            path = "warm" if warm is not None else "cluster"
            store = JobStore(plan.settings)
            if entry is not None:  # leave the queue first: a crash after this fails the job, never runs it twice
                await asyncio.to_thread(JobQueue(plan.settings).remove, entry)
            fields = {
                "progress": {**plan.progress, "execution_path": path, "queue_position": 0, "warm_worker_pid": warm.pid if warm else None},
                "ray_task_name": f"{kind.name}:{job_id}",
                "owner_epoch": self.epoch,
                "status": "running",
                "started_at": datetime.now(UTC),
            }
            if fresh:
                record = await asyncio.to_thread(store.create, kind.name, job_id, request=plan.request, links=plan.links, **fields)
            else:
                await asyncio.to_thread(store.mark_running, kind.name, job_id)
                record = await asyncio.to_thread(store.update, kind.name, job_id, **fields)
            if warm is not None:
                ref = warm.handle.execute.options(name=f"{kind.name}:{job_id}").remote(kind, plan)
            else:
                task = ray.remote(execute).options(
                    name=f"{kind.name}:{job_id}", num_cpus=kind.num_cpus, max_retries=kind.max_retries, retry_exceptions=False
                )
                ref = task.remote(kind, dataclasses.replace(plan, path="cluster"))
        except BaseException:
            self._release(job_id)
            raise
        self.active[job_id].ref = ref
        metrics.job_state(kind.name, "running")
        asyncio.get_running_loop().create_task(self._watch(job_id, ref))
        log.info("job %s (%s) started on the %s path, attempt %d, epoch %s", job_id, kind.name, path, record.attempt, self.epoch)
        return record

    async def _dispatch(self) -> None:
        """Start queued jobs, oldest first per kind, while their kind has room (and, if small, a warm worker)."""
        async with self._admission:
            await self._dispatch_locked()

    async def _dispatch_locked(self) -> None:
        for kind_name, queue in list(self.queues.items()):
            kind = self.kinds.get(kind_name)
            while queue and kind is not None:
                head = queue[0]
                if self._running(kind_name) >= kind.limit(head.plan.settings) or not self._warm_ok(head.plan, head.since):
                    break
                self._dequeue(head)
                try:
                    await self._start(kind, head.plan, fresh=False, entry=head)
                except Exception as exc:  # S3 or Ray trouble: the job fails with the cause, the queue goes on
                    log.exception("job %s could not start from the queue", head.job_id)
                    store = JobStore(head.plan.settings)
                    record = await asyncio.to_thread(store.find, kind_name, head.job_id)
                    if record is not None and not record.done:
                        await asyncio.to_thread(
                            self._fail, store, record, f"job {head.job_id} failed to start: {describe_failure(exc)}", head.plan.settings
                        )
                    self._finished(head.job_id)

    def _kick(self) -> None:
        asyncio.get_running_loop().create_task(self._dispatch())

    def _ensure_pump(self) -> None:
        if self._pump is None or self._pump.done():
            self._pump = asyncio.get_running_loop().create_task(self._run_pump())

    async def _run_pump(self) -> None:
        """Restore the durable queue once, then look at queued jobs every ``PUMP_EVERY_S`` (warm workers get ready)."""
        await self._restore()
        while True:
            try:
                if self.waiting:
                    await self._dispatch()
            except Exception:
                log.exception("queue pump round failed")
            await asyncio.sleep(PUMP_EVERY_S)

    async def _restore(self) -> None:
        """Take up the jobs a previous incarnation left queued, in their order (once per incarnation)."""
        if self._restored.is_set():
            return
        self._restored.set()
        try:
            entries = await asyncio.to_thread(JobQueue(self.settings).load)
        except Exception:
            log.exception("could not read the job queue; queued jobs of an earlier supervisor wait for the next start")
            return
        for entry in entries:
            if entry.job_id in self.waiting or entry.job_id in self.active:
                continue
            self.queues[entry.kind].append(entry)
            self.waiting[entry.job_id] = entry
            self.finished.setdefault(entry.job_id, asyncio.Event())
        if entries:
            log.info("took up %d queued job(s) of an earlier supervisor", len(entries))
            self._kick()

    # --- ends -----------------------------------------------------------------------------------
    async def _watch(self, job_id: str, ref: Any) -> None:
        """Await the task; if it ended without a terminal record, fail the record with the cause."""
        active = self.active[job_id]
        cause: str | None = None
        try:
            await ref
        except Exception as exc:  # the task's own failure is already recorded; a crash is not
            cause = describe_failure(exc)
            if active.warm is not None and _actor_lost(exc):
                cause = f"the warm worker running it (pid {active.warm.pid}) died: {cause}"
                active.warm.restarted()
        self.durations[active.kind].append(time.monotonic() - active.started)
        try:
            metrics.job_state(active.kind, await asyncio.to_thread(self._finish, active.kind, job_id, active.settings, cause))
        except Exception:
            log.exception("job %s: could not finalise its record", job_id)
        finally:
            self._release(job_id)
            self._finished(job_id)
            await self._dispatch()

    def _finished(self, job_id: str) -> None:
        event = self.finished.pop(job_id, None)
        if event is not None:
            event.set()

    def _release(self, job_id: str) -> None:
        """Forget an active job and free its warm worker."""
        active = self.active.pop(job_id, None)
        if active is not None and active.warm is not None and active.warm.job_id == job_id:
            active.warm.job_id = None

    def _start_warm(self, preload: tuple[str, ...], rehearsals: tuple[Any, ...]) -> _Warm:
        """Start a warm worker (its imports run in its own process; ``free`` says when it is ready).

        Owned by this actor: it dies with the supervisor, and its children inherit its runtime env.
        """
        import ray

        from asgard_ray.jobs.warm import WarmWorker

        actor: Any = ray.remote(WarmWorker)
        handle = actor.options(num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=1).remote(preload, rehearsals)
        return _Warm(handle=handle, ready_ref=handle.ready.remote())

    def _finish(self, kind_name: str, job_id: str, settings: Settings, cause: str | None) -> str:
        """Fail the record if the task ended without a terminal one; return the job's final status."""
        store = JobStore(settings)
        record = store.find(kind_name, job_id)
        if record is None or record.done:
            return record.status if record is not None else "failed"
        reason = cause or "its Ray task ended without reporting a result"
        return self._fail(store, record, f"job {job_id} failed: {reason}", settings).status

    def _fail(self, store: JobStore, record: JobRecord, message: str, settings: Settings) -> JobRecord:
        log.warning("job %s (%s) marked failed: %s", record.job_id, record.kind, message)
        record = store.update(record.kind, record.job_id, status="failed", error=message, error_type="JobLost")
        kind = self.kinds.get(record.kind)
        try:
            if kind is not None and kind.on_failed is not None:
                kind.on_failed(record, settings)
        except Exception:
            log.exception("job %s: cleanup after failure did not finish", record.job_id)
        return record

    def _reconcile(self, kind_name: str, job_id: str, settings: Settings) -> JobRecord | None:
        store = JobStore(settings)
        record = store.find(kind_name, job_id)
        if record is None or record.done:
            return record
        if record.status == "queued":
            if job_id in self.waiting:
                return record
            if self._restored.is_set():  # the queue was read and this job is not in it: its entry is lost
                return self._fail(store, record, f"job {job_id} failed: its queue entry is gone", settings)
            return record
        active = self.active.get(job_id)
        if active is not None and record.owner_epoch == self.epoch:
            ended, cause = self._ended(active)
            if not ended:
                return record
            fresh = store.find(kind_name, job_id)
            if fresh is None or fresh.done:
                return fresh
            return self._fail(store, fresh, f"job {job_id} failed: {cause or 'its Ray task ended without reporting a result'}", settings)
        if record.owner_epoch != self.epoch:
            reason = (
                f"its owner, the job supervisor, restarted (epoch {record.owner_epoch} is gone, now {self.epoch}); Ray stopped its task"
            )
        else:
            reason = "its Ray task ended without reporting a result"
        seen = task_state(f"{kind_name}:{job_id}")
        if seen:
            reason += f"; {seen}"
        fresh = store.find(kind_name, job_id)  # the task may have finished meanwhile
        if fresh is None or fresh.done or job_id in self.active:
            return fresh
        return self._fail(store, fresh, f"job {job_id} failed: {reason}", settings)

    @staticmethod
    def _ended(active: _Active) -> tuple[bool, str | None]:
        """Whether the task of an active job is over (its watcher may not have run yet), and why."""
        import ray

        if active.ref is None:
            return False, None
        ready, _ = ray.wait([active.ref], timeout=0)
        if not ready:
            return False, None
        try:
            ray.get(active.ref, timeout=1)
        except Exception as exc:  # any failure ends the task
            if active.warm is not None and _actor_lost(exc):
                active.warm.restarted()
                return True, f"the warm worker running it (pid {active.warm.pid}) died: {describe_failure(exc)}"
            return True, describe_failure(exc)
        return True, None

    def _loop(self) -> None:
        while not self._stop.wait(RECONCILE_EVERY_S):
            for settings in list(self._settings.values()):
                try:
                    store = JobStore(settings)
                    for kind_name, job_id in store.running():
                        if job_id in self.active:
                            continue
                        if store.find(kind_name, job_id) is None:  # a marker whose record never got written
                            store.clear_running(kind_name, job_id)
                            continue
                        self._reconcile(kind_name, job_id, settings)
                except Exception as exc:  # S3 down for a moment: try again next round
                    log.warning("reconcile round failed: %s", exc)
