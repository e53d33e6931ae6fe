"""Materialization: load feature views' latest values from the offline store into the online store, on Ray.

``materialize`` is the library call; ``MATERIALIZE_JOB`` makes it a job kind of the jobs core, so
``POST /feast/materialize`` and ``jobs/materialize.py`` run it as the Ray task
``materialize:<job_id>`` (listed at ``/mlops/jobs``, admitted and reconciled like every job).

Per view it takes the platform's path, not Feast's provider materialization (Feast's Ray offline
store cannot read an ``IcebergSource``, and Feast's Iceberg path ignores snapshot pins): it pins the
view's gold table at its current snapshot (``resolve_table``), reads the key, timestamp and feature
columns of that snapshot (``GoldTable.read``), keeps the latest row per entity key with event time in
``[start, end)`` (ties: the row stored last wins, as in Feast), and writes them with Feast's
``write_to_online_store`` (SQLite in the embedded stack, Redis in production). The finished interval
is then recorded in Feast's registry through the registry's writer actor (one registry write at a
time), which is where ``GET /feast/features/{name}`` reads the last materialized time from; the
result names the snapshot each view was loaded from.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from pydantic import BaseModel, Field, model_validator

from asgard_ray.config import Settings
from asgard_ray.errors import InvalidRequest, NotFound
from asgard_ray.jobs import JobKind, JobRecord, JobStatus, Plan, register_kind
from asgard_ray.types import UtcDatetime

__all__ = [
    "MATERIALIZE_JOB",
    "MaterializeRequest",
    "MaterializeResponse",
    "MaterializeResult",
    "MaterializedView",
    "latest_rows",
    "materialize",
]

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class MaterializeRequest(BaseModel):
    """``POST /feast/materialize``: which views, over which event-time range."""

    feature_views: list[str] = Field(
        default_factory=list, max_length=100, description="Views to materialize (default: every registered view)."
    )
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
    rows: int | None = None
    """Entity rows written to the online store."""
    table_name: str | None = None
    snapshot_id: int | None = None
    """The gold table's snapshot the values came from (None: a Parquet folder)."""


class MaterializeResult(BaseModel):
    """What one materialization loaded."""

    feature_views: list[MaterializedView]
    start_date: datetime
    end_date: datetime
    online_store: str
    seconds: float


class MaterializeResponse(BaseModel):
    """``POST /feast/materialize``: the job and, once it completed, what it loaded."""

    job_id: str
    status: JobStatus
    result: MaterializeResult | None = None
    error: str | None = None
    links: dict[str, str] = Field(default_factory=dict)


def _record_interval(settings: Settings, fv: Any, start: datetime, end: datetime) -> None:
    """Add ``[start, end]`` to the view's materialization intervals (through the writer actor on Ray)."""
    from asgard_ray.features.registry import FeatureRegistry

    try:
        FeatureRegistry(settings).record_materialization(fv.name, start, end)
    except AttributeError:  # a registry module without the method (an older writer actor): write directly
        from asgard_ray.features.store import feature_store

        store = feature_store(settings)
        store.registry.apply_materialization(fv, store.project, start, end)


def latest_rows(
    df: pd.DataFrame,
    join_keys: list[str],
    timestamp_field: str,
    start: datetime,
    end: datetime,
    created_timestamp_column: str | None = None,
) -> pd.DataFrame:
    """The latest row per entity key with ``start <= event time < end`` (Feast's materialization semantics).

    Rows are ordered by event time, then by created time if the source has one, then by their order
    in the table (a stable sort), and the last one per key wins.
    """
    ts = pd.to_datetime(df[timestamp_field], utc=True)
    window = df[(ts >= pd.Timestamp(start)) & (ts < pd.Timestamp(end))]
    order = [timestamp_field, *([created_timestamp_column] if created_timestamp_column else [])]
    latest = window.sort_values(order, kind="stable").drop_duplicates(subset=join_keys, keep="last")
    return latest.reset_index(drop=True)


def _view_rows(settings: Settings, fv: Any, start: datetime, end: datetime) -> tuple[pd.DataFrame, Any]:
    """The view's latest rows from its gold table, pinned at the current snapshot; and the pin."""
    from asgard_ray.features.registry import SPEC_TAG
    from asgard_ray.features.specs import FeatureViewSpec
    from asgard_ray.gold import resolve_table

    source = fv.batch_source
    spec_json = (fv.tags or {}).get(SPEC_TAG)
    if spec_json:
        src = FeatureViewSpec.model_validate_json(spec_json).source
        table_name, fmt = src.table_name, src.format
    elif hasattr(source, "iceberg_table"):
        table_name, fmt = source.iceberg_table, "iceberg"
    else:
        raise InvalidRequest(f"feature view {fv.name!r} was not registered through asgard; register it with POST /feast/features")
    table = resolve_table(settings, table_name, format=fmt)
    keys = [c.name for c in fv.entity_columns]
    ts_field = source.timestamp_field
    created = source.created_timestamp_column or None
    columns = list(dict.fromkeys([*keys, ts_field, *([created] if created else []), *(f.name for f in fv.features)]))
    df = table.read(settings, columns).to_pandas()
    return latest_rows(df, keys, ts_field, start, end, created), table


def materialize(
    settings: Settings, feature_views: list[str] | None = None, start: datetime | None = None, end: datetime | None = None
) -> MaterializeResult:
    """Materialize ``feature_views`` (default all) over ``[start, end)`` into the online store (blocking).

    Raises:
        NotFound: A view is not registered.
        InvalidRequest: An empty registry or a reversed range.
    """
    from feast.errors import FeatureViewNotFoundException

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
    # The online store needs the view's table (SQLite: one per view; idempotent). Views registered
    # before real-time serving say online=False: mark this in-memory copy so the table is made.
    for fv in views:
        fv.online = True
    provider.update_infra(
        project=store.project,
        tables_to_delete=[],
        tables_to_keep=views,
        entities_to_delete=[],
        entities_to_keep=[store.get_entity(e) for e in {e for fv in views for e in fv.entities}],
        partial=True,
    )
    for fv in views:
        t0 = time.perf_counter()
        rows, table = _view_rows(settings, fv, start, end)
        if len(rows):
            store.write_to_online_store(fv.name, rows)
        _record_interval(settings, fv, start, end)
        done.append(
            MaterializedView(
                name=fv.name,
                seconds=round(time.perf_counter() - t0, 3),
                last_materialized_at=end,
                rows=len(rows),
                table_name=table.identifier,
                snapshot_id=table.snapshot_id,
            )
        )
        log.info(
            "materialized feature view %s over [%s, %s) from %s snapshot %s: %d rows in %.2fs",
            fv.name, start, end, table.identifier, table.snapshot_id, len(rows), done[-1].seconds,
        )  # fmt: skip
    return MaterializeResult(
        feature_views=done,
        start_date=start,
        end_date=end,
        online_store=settings.feast_online_store,
        seconds=round(time.perf_counter() - began, 3),
    )


def _prepare(request: MaterializeRequest, settings: Settings, job_id: str) -> Plan:
    """Fail fast (404 before a job exists) for a view that is not registered."""
    if request.feature_views:
        from asgard_ray.features.registry import FeatureRegistry

        registry = FeatureRegistry(settings)
        for name in request.feature_views:
            registry.get(name)
    return Plan(
        job_id=job_id,
        settings=settings,
        payload=request,
        request=request.model_dump(mode="json"),
        progress={"feature_views": request.feature_views or ["(all)"]},
        links={"status": f"/mlops/jobs/{job_id}"},
        wait=True,
    )


def _run(plan: Plan) -> dict[str, Any]:
    request: MaterializeRequest = plan.payload
    return materialize(plan.settings, request.feature_views, request.start_date, request.end_date).model_dump(mode="json")


def _view(record: JobRecord) -> MaterializeResponse:
    result = MaterializeResult.model_validate(record.result) if record.status == "completed" and record.result else None
    return MaterializeResponse(
        job_id=record.job_id, status=record.status, result=result, error=record.error, links=dict(record.links or {})
    )


MATERIALIZE_JOB = register_kind(JobKind(name="materialize", id_prefix="mat", prepare=_prepare, run=_run, view=_view, wait_s=600.0))
"""Materialization as a job kind of the jobs core (``POST /feast/materialize``, ``jobs/materialize.py``)."""
