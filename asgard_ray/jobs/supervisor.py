"""The job supervisor: a named, detached Ray actor that owns every job task and reconciles records.

Why an actor and not Ray Jobs: a job of this platform is usually small (the seed trains on 5
entities and scores 10 rows), so interactive speed matters (issue 12). Ray Jobs start a new driver
process per job (a Python start, imports, ``ray.init``: seconds each); a warm actor submits a named
task (``<kind>:<job_id>``, in the dashboard) in milliseconds, on workers Ray already keeps warm.
The owner must not be the Serve replica (a replica restart would kill its tasks): this actor is
detached, restarts on failure (``max_restarts=-1``) and asks for no CPU.

Ownership and reconciliation:

- The supervisor submits each job task and awaits it; when the task ends without having written a
  terminal record (worker killed, out of memory, node lost), the supervisor marks it ``failed`` with
  the cause.
- Each incarnation has an ``epoch``. Ray kills the tasks of a dead owner, so a record that says
  ``pending``/``running`` under another epoch, or under this epoch but with no live task here, is
  dead: reading it (``reconcile``) or the background loop (every few seconds, over the
  ``jobs/_running/`` markers) marks it failed, with Ray's view of the task as the cause when the
  state API has one, and calls the kind's ``on_failed`` cleanup (a scoring job's partial files).
- Admission: at most ``limit`` jobs of a kind run at once here; past it, ``TooManyJobs`` (429).
- One run per job id: a job id that is running here is a ``Conflict`` (409).
- Small work (``plan.warm``) runs on one of the supervisor's warm workers when one is ready and free
  (``asgard_ray.jobs.warm``); the record's progress and the result say which path ran.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Final, cast

from asgard_ray.config import Settings
from asgard_ray.errors import Conflict, NotFound, TooManyJobs
from asgard_ray.jobs.kinds import Plan, get_kind
from asgard_ray.jobs.records import JobKindName, JobRecord, JobStore

__all__ = ["RECONCILE_EVERY_S", "SUPERVISOR_NAME", "JobSupervisor", "execute", "task_state"]

log = logging.getLogger(__name__)

SUPERVISOR_NAME: Final = "asgard-jobs"
RECONCILE_EVERY_S: Final = 5.0


def execute(kind_name: str, plan: Plan) -> dict[str, Any]:
    """The body of the Ray task ``<kind>:<job_id>``: run the kind's work with its record kept in step."""
    from asgard_ray.jobs.core import run_tracked

    kind = get_kind(kind_name)
    return run_tracked(plan.settings, kind.name, plan.job_id, kind.run, plan)


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
class _Active:
    kind: str
    settings: Settings
    ref: Any = None
    warm: _Warm | None = None


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
            log.warning("warm worker (pid %s) did not answer in %.0f s; this job takes the cluster path", self.pid, timeout)
            return False
        except Exception as exc:  # a failed ping never fails the job: it takes the cluster path
            log.warning("warm worker (pid %s) did not answer (%s); this job takes the cluster path", self.pid, type(exc).__name__)
            if _actor_lost(exc):
                self.restarted()
            return False


async def _as_future(ref: Any) -> Any:
    return await ref


def _actor_lost(exc: BaseException) -> bool:
    import ray.exceptions as rex

    return isinstance(exc, rex.ActorDiedError | rex.ActorUnavailableError)


def _settings_key(settings: Settings) -> tuple[str | None, str]:
    return settings.s3_endpoint, settings.s3_bucket


class JobSupervisor:
    """Submit, own, watch and reconcile job tasks (wrapped with ``ray.remote`` by ``get_supervisor``)."""

    def __init__(self, settings: Settings) -> None:
        self.epoch = uuid.uuid4().hex[:12]
        self.active: dict[str, _Active] = {}
        self._settings: dict[tuple[str | None, str], Settings] = {_settings_key(settings): settings}
        self.warm = [self._start_warm() for _ in range(settings.asgard_warm_workers)]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="asgard-jobs-reconcile", daemon=True)
        self._thread.start()
        log.info("job supervisor up, epoch %s", self.epoch)

    # --- calls ----------------------------------------------------------------------------------
    async def info(self) -> dict[str, Any]:
        """The epoch and the jobs running here, per kind."""
        counts: dict[str, int] = {}
        for a in self.active.values():
            counts[a.kind] = counts.get(a.kind, 0) + 1
        warm = []
        for w in self.warm:
            w.free()  # refreshes ``ready`` / ``broken``
            warm.append({"ready": w.ready, "job_id": w.job_id, "broken": w.broken, "pid": w.pid})
        return {"epoch": self.epoch, "running": counts, "job_ids": sorted(self.active), "warm_workers": warm}

    async def submit(self, kind_name: str, plan: Plan, limit: int, max_retries: int, num_cpus: float) -> dict[str, Any]:
        """Record and start job ``plan.job_id``; answer ``{"record", "ref": [ObjectRef] | None}``.

        An earlier, completed run of the same id is answered as it is (``ref`` None).

        Raises:
            Conflict: The job id is running.
            TooManyJobs: ``limit`` jobs of this kind already run.
        """
        import ray

        job_id = plan.job_id
        if job_id in self.active:
            raise Conflict(
                f"job {job_id} is still running; wait for it to finish or use another job_id",
                detail={"job_id": job_id, "status": "running"},
            )
        running = sum(1 for a in self.active.values() if a.kind == kind_name)
        if running >= limit:
            raise TooManyJobs(
                f"{running} {kind_name.replace('_', ' ')} job(s) are running, the limit; retry in a few seconds",
                detail={"kind": kind_name, "running": running, "limit": limit},
                retry_after=5,
            )
        warm = next((w for w in self.warm if w.free()), None) if plan.warm else None
        if warm is not None:
            warm.job_id = job_id  # taken before any await
        self.active[job_id] = _Active(kind_name, plan.settings, warm=warm)  # claimed before any await
        self._settings.setdefault(_settings_key(plan.settings), plan.settings)
        try:
            if warm is not None and not await warm.alive():
                warm.job_id = self.active[job_id].warm = None
                warm = None
            path = "warm" if warm is not None else "cluster"
            store = JobStore(plan.settings)
            previous = await asyncio.to_thread(store.find, kind_name, job_id)
            if previous is not None and previous.status == "completed":
                self._release(job_id)
                return {"record": previous.model_dump(mode="json"), "ref": None}
            record = await asyncio.to_thread(
                store.create,
                cast(JobKindName, kind_name),
                job_id,
                request=plan.request,
                progress={**plan.progress, "execution_path": path},
                links=plan.links,
                ray_task_name=f"{kind_name}:{job_id}",
                owner_epoch=self.epoch,
                status="running",
            )
            if warm is not None:
                ref = warm.handle.execute.options(name=f"{kind_name}:{job_id}").remote(kind_name, plan)
            else:
                task = ray.remote(execute).options(
                    name=f"{kind_name}:{job_id}", num_cpus=num_cpus, max_retries=max_retries, retry_exceptions=False
                )
                ref = task.remote(kind_name, dataclasses.replace(plan, path="cluster"))
        except BaseException:
            self._release(job_id)
            raise
        self.active[job_id].ref = ref
        asyncio.get_running_loop().create_task(self._watch(job_id, ref))
        log.info("job %s (%s) started on the %s path, attempt %d, epoch %s", job_id, kind_name, path, record.attempt, self.epoch)
        return {"record": record.model_dump(mode="json"), "ref": [ref]}

    async def reconcile(self, kind_name: str, job_id: str, settings: Settings) -> dict[str, Any]:
        """The record of ``job_id``, failed first if its task is gone (``NotFound`` if none)."""
        self._settings.setdefault(_settings_key(settings), settings)
        record = await asyncio.to_thread(self._reconcile, kind_name, job_id, settings)
        if record is None:
            raise NotFound(f"no {kind_name.replace('_', ' ')} job {job_id!r}")
        return record.model_dump(mode="json")

    # --- internals ------------------------------------------------------------------------------
    async def _watch(self, job_id: str, ref: Any) -> None:
        """Await the task; if it ended without a terminal record, fail the record with the cause."""
        from asgard_ray.jobs.core import describe_failure

        active = self.active[job_id]
        cause: str | None = None
        try:
            await ref
        except Exception as exc:  # the task's own failure is already recorded; a crash is not
            cause = describe_failure(exc)
            if active.warm is not None and _actor_lost(exc):
                cause = f"the warm worker running it (pid {active.warm.pid}) died: {cause}"
                active.warm.restarted()
        try:
            await asyncio.to_thread(self._finish, active.kind, job_id, active.settings, cause)
        except Exception:
            log.exception("job %s: could not finalise its record", job_id)
        finally:
            self._release(job_id)

    def _release(self, job_id: str) -> None:
        """Forget an active job and free its warm worker."""
        active = self.active.pop(job_id, None)
        if active is not None and active.warm is not None and active.warm.job_id == job_id:
            active.warm.job_id = None

    def _start_warm(self) -> _Warm:
        """Start a warm worker (its imports run in its own process; ``free`` says when it is ready).

        Owned by this actor: it dies with the supervisor, and its children inherit its runtime env.
        """
        import ray

        from asgard_ray.jobs.warm import WarmWorker

        actor: Any = ray.remote(WarmWorker)
        handle = actor.options(num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=1).remote()
        return _Warm(handle=handle, ready_ref=handle.ready.remote())

    def _finish(self, kind_name: str, job_id: str, settings: Settings, cause: str | None) -> None:
        store = JobStore(settings)
        record = store.find(kind_name, job_id)
        if record is None or record.done:
            return
        reason = cause or "its Ray task ended without reporting a result"
        self._fail(store, record, f"job {job_id} failed: {reason}", settings)

    def _fail(self, store: JobStore, record: JobRecord, message: str, settings: Settings) -> JobRecord:
        log.warning("job %s (%s) marked failed: %s", record.job_id, record.kind, message)
        record = store.update(record.kind, record.job_id, status="failed", error=message, error_type="JobLost")
        try:
            kind = get_kind(record.kind)
            if kind.on_failed is not None:
                kind.on_failed(record, settings)
        except Exception:
            log.exception("job %s: cleanup after failure did not finish", record.job_id)
        return record

    def _reconcile(self, kind_name: str, job_id: str, settings: Settings) -> JobRecord | None:
        store = JobStore(settings)
        record = store.find(kind_name, job_id)
        if record is None or record.done:
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

        from asgard_ray.jobs.core import describe_failure

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
