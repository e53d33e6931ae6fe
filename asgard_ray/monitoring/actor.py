"""The monitoring actor (a named, detached, restartable Ray actor) and its typed client.

One actor named ``asgard-monitoring`` in the platform namespace holds the state; every API replica,
job and node reaches the same one by name. It asks for no CPU, restarts without limit, and rebuilds
its state from S3 in ``__init__``. Its calls are idempotent (a write carries a client-made id), so
Ray retries them across a restart (``max_task_retries``): a write interrupted by a crash is either
found after the restart (on S3, or in the write-ahead log the new actor replays) and answered from
there, or written then.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import ray

from asgard_ray.config import Settings
from asgard_ray.errors import AsgardError, ServiceUnavailable
from asgard_ray.heap import freeze_startup_heap
from asgard_ray.monitoring.rules import RuleSet
from asgard_ray.monitoring.schemas import (
    HistoryRequest,
    HistoryResponse,
    MonitoringRecord,
    MonitoringRequest,
    MonitoringResponse,
    new_monitoring_id,
)
from asgard_ray.monitoring.state import MonitoringState

__all__ = ["ACTOR_NAME", "MonitoringActor", "MonitoringClient"]

log = logging.getLogger(__name__)

ACTOR_NAME = "asgard-monitoring"


class MonitoringActor:
    """Ray actor body: a thin shell over ``MonitoringState`` (threaded, so writes group-commit)."""

    def __init__(self, settings: Settings, prefix: str = "", mirror: bool = True) -> None:
        logging.basicConfig(level=logging.INFO)
        self.state = MonitoringState(settings, prefix=prefix, mirror=mirror, wal_dir=settings.monitoring_wal_dir)
        freeze_startup_heap("monitoring actor")
        if self.state.mirror is not None:  # MLflow is imported in the mirror's thread, seconds later
            threading.Thread(target=self._freeze_after_mlflow, name="freeze-startup-heap", daemon=True).start()

    def _freeze_after_mlflow(self) -> None:
        assert self.state.mirror is not None
        if self.state.mirror.imported.wait(timeout=600):
            freeze_startup_heap("monitoring actor, MLflow imported")

    def log(self, request: MonitoringRequest, monitoring_id: str) -> MonitoringResponse:
        """Store one record (idempotent by id)."""
        return self.state.log(request, monitoring_id)

    def history(self, query: HistoryRequest) -> HistoryResponse:
        """Query history."""
        return self.state.history(query)

    def get(self, monitoring_id: str) -> MonitoringRecord:
        """One record."""
        return self.state.get(monitoring_id)

    def models(self) -> dict[str, list[str]]:
        """Monitored models and versions."""
        return self.state.models()

    def recent(self, model_name: str | None, per_version: int) -> dict[tuple[str, str], list[MonitoringRecord]]:
        """Newest records per model version."""
        return self.state.recent(model_name, per_version)

    def get_rules(self, model_name: str | None) -> dict[str, Any]:
        """Rules of a scope."""
        return self.state.get_rules(model_name)

    def set_rules(self, model_name: str | None, rules: RuleSet) -> dict[str, Any]:
        """Replace the rules of a scope (idempotent)."""
        return self.state.set_rules(model_name, rules)

    def mlflow_run_id(self, model_name: str, model_version: str) -> str:
        """The MLflow monitoring run of a model version."""
        return self.state.mlflow_run_id(model_name, model_version)

    def flush_mirror(self, timeout: float = 30.0) -> bool:
        """Wait for the MLflow mirror."""
        return self.state.flush_mirror(timeout)

    def stats(self) -> dict[str, Any]:
        """Counts."""
        return self.state.stats()

    def flush_uploads(self, timeout: float = 30.0) -> bool:
        """Wait until every acknowledged record is on S3."""
        return self.state.flush_uploads(timeout)

    def ping(self) -> str:
        """Liveness."""
        return "ok"


class MonitoringClient:
    """Typed access to the monitoring actor; creates it on first use."""

    def __init__(self, settings: Settings, name: str = ACTOR_NAME, prefix: str = "", mirror: bool = True, timeout_s: float = 60.0) -> None:
        self.settings = settings
        self.name = name
        self.prefix = prefix
        self.mirror = mirror
        self.timeout_s = timeout_s
        self._handle: Any = None

    @property
    def handle(self) -> Any:
        """The actor handle (get-or-create by name in the platform namespace)."""
        if self._handle is None:
            if not ray.is_initialized():
                from asgard_ray.runtime import connect

                connect(self.settings)
            cls = ray.remote(MonitoringActor).options(
                name=self.name,
                namespace=self.settings.ray_namespace,
                lifetime="detached",
                get_if_exists=True,
                max_restarts=-1,
                max_task_retries=-1,
                num_cpus=0,
                max_concurrency=32,
                runtime_env={"env_vars": self.settings.worker_env()},
            )
            self._handle = cls.remote(self.settings, self.prefix, self.mirror)
        return self._handle

    def _failed(self, method: str, exc: BaseException, attempt: int, timeout: float) -> None:
        """Raise what a failed call means to the caller, or return to retry once (the actor was gone for good)."""
        if isinstance(exc, ray.exceptions.RayTaskError):
            cause = getattr(exc, "cause", None)
            if isinstance(cause, AsgardError):
                raise cause from None
            raise exc
        if isinstance(exc, ray.exceptions.RayActorError):
            # the actor is gone for good (killed without restart): get-or-create it again once
            self._handle = None
            if attempt == 2:
                # the cause (a traceback, with terminal colour codes) goes to the log, never to a response body
                log.error("monitoring actor %s is unavailable for %s: %s", self.name, method, exc)
                raise ServiceUnavailable(f"the monitoring actor {self.name!r} is unavailable; the server log has the cause") from None
            log.warning("monitoring actor %s died; creating it again for %s", self.name, method)
            return
        if isinstance(exc, ray.exceptions.GetTimeoutError | TimeoutError):
            raise ServiceUnavailable(f"the monitoring actor {self.name!r} did not answer in {timeout:.0f}s") from exc
        raise exc

    def _call(self, method: str, *args: Any, timeout_s: float | None = None) -> Any:
        timeout = self.timeout_s if timeout_s is None else timeout_s
        for attempt in (1, 2):
            try:
                return ray.get(getattr(self.handle, method).remote(*args), timeout=timeout)
            except Exception as exc:
                self._failed(method, exc, attempt, timeout)
        raise AssertionError("unreachable")

    async def _acall(self, method: str, *args: Any) -> Any:
        """``_call`` for the event loop: awaits the actor with a timeout and holds no thread while it waits."""
        for attempt in (1, 2):
            handle = self._handle if self._handle is not None else await asyncio.to_thread(lambda: self.handle)
            try:
                return await asyncio.wait_for(_awaited(getattr(handle, method).remote(*args)), self.timeout_s)
            except Exception as exc:
                self._failed(method, exc, attempt, self.timeout_s)
        raise AssertionError("unreachable")

    def log(self, request: MonitoringRequest) -> MonitoringResponse:
        """Store a record; the id is made here so a retry after an actor restart is not a duplicate."""
        return self._call("log", request, request.monitoring_id or new_monitoring_id())

    def history(self, query: HistoryRequest) -> HistoryResponse:
        """Query history (``NotFound`` for a model without records)."""
        return self._call("history", query)

    def get(self, monitoring_id: str) -> MonitoringRecord:
        """One record by id."""
        return self._call("get", monitoring_id)

    def models(self) -> dict[str, list[str]]:
        """Monitored models and their versions."""
        return self._call("models")

    def recent(self, model_name: str | None = None, per_version: int = 200) -> dict[tuple[str, str], list[MonitoringRecord]]:
        """The newest records of each model version, oldest first."""
        return self._call("recent", model_name, per_version)

    def get_rules(self, model_name: str | None = None) -> dict[str, Any]:
        """Stored and effective rules of a scope."""
        return self._call("get_rules", model_name)

    def set_rules(self, model_name: str | None, rules: RuleSet) -> dict[str, Any]:
        """Replace the rules of a scope."""
        return self._call("set_rules", model_name, rules)

    def mlflow_run_id(self, model_name: str, model_version: str) -> str:
        """The MLflow monitoring run of a model version."""
        return self._call("mlflow_run_id", model_name, model_version)

    def flush_mirror(self, timeout: float = 30.0) -> bool:
        """Wait until MLflow has every record."""
        return self._call("flush_mirror", timeout)

    def flush_uploads(self, timeout: float = 30.0) -> bool:
        """Wait until every acknowledged record is on S3 (immediate when writes are acknowledged after the PUT)."""
        return self._call("flush_uploads", timeout, timeout_s=timeout + 30)

    def stats(self, timeout_s: float | None = None) -> dict[str, Any]:
        """Counts: records, records in memory, quarantined records, rebuild time."""
        return self._call("stats", timeout_s=timeout_s)

    # --- the same calls for async routes -----------------------------------------------------------
    async def alog(self, request: MonitoringRequest) -> MonitoringResponse:
        """``log`` without holding a thread."""
        return await self._acall("log", request, request.monitoring_id or new_monitoring_id())

    async def ahistory(self, query: HistoryRequest) -> HistoryResponse:
        """``history`` without holding a thread."""
        return await self._acall("history", query)

    async def aget(self, monitoring_id: str) -> MonitoringRecord:
        """``get`` without holding a thread."""
        return await self._acall("get", monitoring_id)

    async def amodels(self) -> dict[str, list[str]]:
        """``models`` without holding a thread."""
        return await self._acall("models")

    async def arecent(self, model_name: str | None = None, per_version: int = 200) -> dict[tuple[str, str], list[MonitoringRecord]]:
        """``recent`` without holding a thread."""
        return await self._acall("recent", model_name, per_version)

    async def aget_rules(self, model_name: str | None = None) -> dict[str, Any]:
        """``get_rules`` without holding a thread."""
        return await self._acall("get_rules", model_name)

    async def aset_rules(self, model_name: str | None, rules: RuleSet) -> dict[str, Any]:
        """``set_rules`` without holding a thread."""
        return await self._acall("set_rules", model_name, rules)


async def _awaited(ref: Any) -> Any:
    return await ref
