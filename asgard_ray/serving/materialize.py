"""Materialization: load feature views' latest values from the offline store into the online store, on Ray.

``materialize`` is the library call (a Ray task wraps it for ``POST /feast/materialize`` and
``jobs/materialize.py``). Per view it runs Feast's provider materialization: the Ray offline store
pulls the latest row per entity in ``[start, end)`` as Ray Data work, and the rows are written to the
online store (SQLite in the embedded stack, Redis in production). The finished interval is then
recorded in Feast's registry through the registry's writer actor (one registry write at a time),
which is where ``GET /feast/features/{name}`` reads the last materialized time from.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field, model_validator

from asgard_ray.config import Settings
from asgard_ray.errors import InvalidRequest, NotFound, ServiceUnavailable
from asgard_ray.types import UtcDatetime

__all__ = ["MaterializeRequest", "MaterializeResponse", "MaterializedView", "materialize", "materialize_async",
           "materialize_on_ray"]

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TIMEOUT_S = 3600.0


class MaterializeRequest(BaseModel):
    """``POST /feast/materialize``: which views, over which event-time range."""

    feature_views: list[str] = Field(default_factory=list, max_length=100,
                                     description="Views to materialize (default: every registered view).")
    start_date: UtcDatetime | None = Field(default=None, description="Earliest event time (default: the beginning).")
    end_date: UtcDatetime | None = Field(default=None, description="Latest event time (default: now).")

    @model_validator(mode="after")
    def _range(self) -> MaterializeRequest:
        if self.start_date and self.end_date and self.start_date >= self.end_date:
            raise ValueError("start_date must be before end_date")
        return self


class MaterializedView(BaseModel):
    """One view's materialization."""

    name: str
    seconds: float
    last_materialized_at: datetime | None = None


class MaterializeResponse(BaseModel):
    """What was materialized."""

    feature_views: list[MaterializedView]
    start_date: datetime
    end_date: datetime
    online_store: str
    seconds: float


def _record_interval(settings: Settings, fv: Any, start: datetime, end: datetime) -> None:
    """Add ``[start, end]`` to the view's materialization intervals (through the writer actor on Ray)."""
    from asgard_ray.features.registry import FeatureRegistry

    try:
        FeatureRegistry(settings).record_materialization(fv.name, start, end)
    except AttributeError:  # a registry module without the method (an older writer actor): write directly
        from asgard_ray.features.store import feature_store

        store = feature_store(settings)
        store.registry.apply_materialization(fv, store.project, start, end)


def materialize(settings: Settings, feature_views: list[str] | None = None, start: datetime | None = None,
                end: datetime | None = None) -> MaterializeResponse:
    """Materialize ``feature_views`` (default all) over ``[start, end)`` into the online store (blocking).

    Raises:
        NotFound: A view is not registered.
        InvalidRequest: An empty registry or a reversed range.
    """
    from feast.errors import FeatureViewNotFoundException
    from tqdm import tqdm

    from asgard_ray.features.store import feature_store

    store = feature_store(settings)
    store.refresh_registry()
    start = start or EPOCH
    end = end or datetime.now(UTC)
    if start >= end:
        raise InvalidRequest("start_date must be before end_date")
    names = list(dict.fromkeys(feature_views or [fv.name for fv in store.list_feature_views()]))
    if not names:
        raise InvalidRequest("no feature views are registered; register one with POST /feast/features first")
    views = []
    for name in names:
        try:
            views.append(store.get_feature_view(name))
        except FeatureViewNotFoundException as exc:
            raise NotFound(f"feature view {name!r} is not registered") from exc
    provider = store._get_provider()
    began = time.perf_counter()
    done = []
    # Feast's local engine writes online only for views marked online, and SQLite needs the view's table:
    # mark this in-memory copy (views registered before real-time serving say online=False) and create
    # the tables (idempotent) before writing.
    for fv in views:
        fv.online = True
    provider.update_infra(project=store.project, tables_to_delete=[], tables_to_keep=views, entities_to_delete=[],
                          entities_to_keep=[store.get_entity(e) for e in {e for fv in views for e in fv.entities}],
                          partial=True)
    for fv in views:
        t0 = time.perf_counter()
        provider.materialize_single_feature_view(
            config=store.config, feature_view=fv, start_date=start, end_date=end, registry=store.registry,
            project=store.project, tqdm_builder=lambda n: tqdm(total=n, disable=True),
        )
        _record_interval(settings, fv, start, end)
        done.append(MaterializedView(name=fv.name, seconds=round(time.perf_counter() - t0, 3), last_materialized_at=end))
        log.info("materialized feature view %s over [%s, %s) in %.2fs", fv.name, start, end, done[-1].seconds)
    return MaterializeResponse(feature_views=done, start_date=start, end_date=end,
                               online_store=settings.feast_online_store, seconds=round(time.perf_counter() - began, 3))


def _task(settings: Settings, names: list[str], start: datetime | None, end: datetime | None) -> dict[str, Any]:
    return materialize(settings, names, start, end).model_dump(mode="json")


def materialize_on_ray(settings: Settings, request: MaterializeRequest) -> Any:
    """Start materialization as a Ray task named ``materialize:<views>``; returns its ref."""
    import ray

    from asgard_ray.runtime import connect

    connect(settings)
    label = ",".join(request.feature_views)[:80] or "all"
    fn = ray.remote(_task).options(name=f"materialize:{label}", num_cpus=1, max_retries=0,
                                   runtime_env={"env_vars": settings.worker_env()})
    return fn.remote(settings, request.feature_views, request.start_date, request.end_date)


async def materialize_async(settings: Settings, request: MaterializeRequest, timeout_s: float = _TIMEOUT_S) -> MaterializeResponse:
    """Run materialization on Ray and await it (for the async route).

    Raises:
        NotFound, InvalidRequest: From ``materialize``; ServiceUnavailable when it runs past ``timeout_s``.
    """
    from asgard_ray.jobs import domain_error

    ref = await asyncio.to_thread(materialize_on_ray, settings, request)
    try:
        out = await asyncio.wait_for(_await(ref), timeout_s)
    except TimeoutError:
        raise ServiceUnavailable(f"materialization did not finish in {timeout_s:g}s; it goes on in the background") from None
    except Exception as exc:
        err = domain_error(exc)
        if err is not None:
            raise err from None
        raise
    return MaterializeResponse.model_validate(out)


async def _await(ref: Any) -> Any:
    return await ref
