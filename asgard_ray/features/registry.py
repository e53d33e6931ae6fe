"""Register, list, get and delete feature views in the Feast registry.

Writes are serialised through one named, detached Ray actor (``asgard-feast-registry-writer``).
Feast's file registry is one ``registry.pb`` on S3, and ``apply`` reads it, changes it and writes
it back whole, with no lock: two registrations of different views at the same time can each write
a registry without the other's view. Every writer (each Serve replica, each ``ray job submit``
driver) is on the Ray cluster, so the actor is the one place that sees them all; it runs one
registration or deletion at a time (``max_concurrency=1``), and each reads the registry fresh
(``cache_ttl_seconds: 0``), so none is lost. The check "identical spec -> unchanged, different
spec -> 409" runs inside the actor too, so it cannot race either.

Why not a conditional write (``If-Match`` on the registry object, retried on 412): Feast offers no
hook for it short of replacing its S3 registry store, and the embedded S3 server (moto) checks
``If-Match`` and then writes in two steps without a lock, so two racing writes can both pass the
check. The actor needs neither. A process that is not connected to Ray (a plain script, a unit
test) writes directly, unserialised; the platform's own writers are always connected.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from asgard_ray.config import Settings
from asgard_ray.errors import Conflict, InvalidRequest, NotFound, ServiceUnavailable
from asgard_ray.features.sources import table_uri
from asgard_ray.features.specs import (
    FeastStatus,
    FeatureField,
    FeatureSourceSpec,
    FeatureViewInfo,
    FeatureViewList,
    FeatureViewSpec,
    RegisterFeaturesResponse,
)
from asgard_ray.features.store import feature_store, registry_location
from asgard_ray.gold import GoldTable, catalog_properties, catalog_status, resolve_table

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView

__all__ = [
    "OFFLINE_STORE",
    "SPEC_TAG",
    "WRITER_ACTOR",
    "FeatureRegistry",
    "batch_source",
    "feast_type",
    "registry_version",
    "warm_writer",
]

log = logging.getLogger(__name__)

SPEC_TAG = "asgard.spec"
WRITER_ACTOR = "asgard-feast-registry-writer"
"""Name of the detached actor that performs every Feast registry write, one at a time."""
_WRITE_TIMEOUT_S = 300.0

_COMPATIBLE = {
    "int64": pa.types.is_integer,
    "int32": pa.types.is_integer,
    "float64": lambda t: pa.types.is_floating(t) or pa.types.is_integer(t),
    "float32": lambda t: pa.types.is_floating(t) or pa.types.is_integer(t),
    "string": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
    "bool": pa.types.is_boolean,
    "bytes": lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t),
    "unix_timestamp": pa.types.is_timestamp,
}


def feast_type(dtype: str) -> Any:
    """The Feast type of one of the spec's dtypes."""
    from feast import types as ft

    return {
        "int64": ft.Int64,
        "int32": ft.Int32,
        "float64": ft.Float64,
        "float32": ft.Float32,
        "string": ft.String,
        "bool": ft.Bool,
        "bytes": ft.Bytes,
        "unix_timestamp": ft.UnixTimestamp,
    }[dtype]


def registry_version(store: FeatureStore) -> str | None:
    """The registry's version id (changes on every apply), for lineage tags."""
    try:
        proto = store.registry._get_registry_proto(project=store.project, allow_cache=False)  # type: ignore[attr-defined]
        return proto.version_id or None
    except Exception:  # an empty registry has no proto yet
        return None


def _entity_value_type(arrow_type: pa.DataType) -> Any:
    from feast import ValueType

    if pa.types.is_integer(arrow_type):
        return ValueType.INT64
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return ValueType.STRING
    raise InvalidRequest(f"entity column type {arrow_type} is not supported; use an integer or string key")


def _check_against_table(spec: FeatureViewSpec, schema: pa.Schema) -> None:
    """Every referenced column exists with a compatible type; report all problems at once."""
    problems: list[str] = []
    columns = set(schema.names)
    table = spec.source.table_name
    ts = spec.source.timestamp_field
    if ts not in columns:
        problems.append(f"timestamp_field {ts!r} is not a column of {table}")
    elif not pa.types.is_timestamp(schema.field(ts).type):
        problems.append(f"timestamp_field {ts!r} has type {schema.field(ts).type}, not a timestamp")
    for entity in spec.entities:
        if entity not in columns:
            problems.append(f"entity {entity!r} is not a column of {table}")
    for feat in spec.features:
        if feat.name not in columns:
            problems.append(f"feature {feat.name!r} is not a column of {table}")
        elif not _COMPATIBLE[feat.dtype](schema.field(feat.name).type):
            problems.append(f"feature {feat.name!r} is {schema.field(feat.name).type} in {table}, not {feat.dtype}")
    if problems:
        raise InvalidRequest(
            "; ".join(problems),
            detail={"table_name": table, "columns": sorted(columns), "problems": problems},
        )


OFFLINE_STORE = "asgard: as-of join on Ray over pinned Iceberg snapshots (resolve_table -> GoldTable.read -> features.asof)"
"""What serves offline reads (training frames, batch scoring, materialization): the platform, not Feast's offline store."""


def _source_uri(fv: FeatureView, settings: Settings, spec: FeatureViewSpec) -> str:
    """Where the view's rows are: ``iceberg://<catalog>/<namespace>.<table>`` or the Parquet folder."""
    source: Any = fv.batch_source
    if source is not None and hasattr(source, "iceberg_table"):
        return f"iceberg://{source.catalog_name}/{source.namespace}.{source.iceberg_table}"
    if source is not None and getattr(source, "path", None):
        return str(source.path)
    return table_uri(settings, spec.source.table_name, spec.source.format)


def batch_source(settings: Settings, spec: FeatureViewSpec, table: GoldTable) -> Any:
    """The Feast data source recorded for a view: ``IcebergSource`` (no secret in it) or ``FileSource``."""
    if table.format == "iceberg":
        from feast.infra.data_sources.contrib.iceberg_catalog.iceberg_source import IcebergSource

        return IcebergSource(
            name=spec.source.table_name,
            warehouse=settings.gold_warehouse,
            namespace=table.namespace,
            table=table.name,
            catalog_type=settings.asgard_gold_catalog,
            catalog_name=settings.trino_catalog,
            endpoint=settings.gold_catalog_uri if settings.asgard_gold_catalog == "rest" else None,
            catalog_properties=catalog_properties(settings, secrets=False),
            timestamp_field=spec.source.timestamp_field,
            created_timestamp_column=spec.source.created_timestamp_column or "",
            credential_vending=False,
        )
    from feast import FileSource

    return FileSource(
        name=spec.source.table_name,
        path=table.location,
        timestamp_field=spec.source.timestamp_field,
        created_timestamp_column=spec.source.created_timestamp_column or "",
        s3_endpoint_override=settings.s3_endpoint,
    )


def _same_spec(stored: str | None, spec: FeatureViewSpec) -> bool:
    """A re-registration that leaves ``source.format`` out matches the stored spec's resolved format."""
    if stored is None:
        return False
    if stored == spec.canonical():
        return True
    if spec.source.format is None:
        old = FeatureViewSpec.model_validate_json(stored)
        return old.source.format is not None and stored == _with_format(spec, old.source.format).canonical()
    return False


def _with_format(spec: FeatureViewSpec, fmt: str) -> FeatureViewSpec:
    return spec.model_copy(update={"source": spec.source.model_copy(update={"format": fmt})})


def _utc(ts: datetime | None) -> datetime | None:
    """Feast keeps naive UTC timestamps; the API promises RFC 3339 (with an offset)."""
    return ts.replace(tzinfo=UTC) if ts is not None and ts.tzinfo is None else ts


def _dtype_name(dtype: Any) -> str:
    return str(dtype).lower().replace("primitivefeasttype.", "")


def _info(fv: FeatureView, settings: Settings) -> FeatureViewInfo:
    tags = dict(fv.tags or {})
    spec_json = tags.pop(SPEC_TAG, None)
    if spec_json:
        spec = FeatureViewSpec.model_validate_json(spec_json)
        return FeatureViewInfo(
            **spec.model_dump(exclude={"tags"}),
            tags=spec.tags,
            source_uri=_source_uri(fv, settings, spec),
            created_at=_utc(fv.created_timestamp),
            updated_at=_utc(fv.last_updated_timestamp),
            last_materialized_at=_utc(fv.most_recent_end_time),
        )
    # a view registered outside asgard (feast apply): describe it from Feast's own fields
    source = fv.batch_source
    if source is None:
        raise NotFound(f"feature view {fv.name!r} has no batch source to describe")
    return FeatureViewInfo(
        name=fv.name,
        entities=list(fv.entities),
        features=[FeatureField.model_validate({"name": f.name, "dtype": _dtype_name(f.dtype)}) for f in fv.features],
        source=FeatureSourceSpec(table_name=source.name or fv.name, timestamp_field=source.timestamp_field),
        source_uri=getattr(fv.batch_source, "path", ""),
        tags=tags,
        created_at=_utc(fv.created_timestamp),
        updated_at=_utc(fv.last_updated_timestamp),
        last_materialized_at=_utc(fv.most_recent_end_time),
    )


class RegistryWriter:
    """The body of the writer actor: one registry write at a time, with the caller's settings."""

    def register(self, settings: Settings, spec: FeatureViewSpec) -> RegisterFeaturesResponse:
        """Create or confirm a feature view (see ``FeatureRegistry.register``)."""
        return FeatureRegistry(settings).register_here(spec)

    def delete(self, settings: Settings, name: str) -> FeatureViewInfo:
        """Remove a feature view (see ``FeatureRegistry.delete``)."""
        return FeatureRegistry(settings).delete_here(name)

    def record_materialization(self, settings: Settings, name: str, start: datetime, end: datetime) -> None:
        """Add a materialized interval to a view (see ``FeatureRegistry.record_materialization``)."""
        FeatureRegistry(settings).record_materialization_here(name, start, end)

    def warm(self, settings: Settings) -> int:
        """Pay now what a first registration would: Feast's imports, the store and its registry, a gold table's load.

        Returns:
            This actor's pid.
        """
        import os

        from feast import Entity, FeatureView, Field  # noqa: F401 - imported for their cost, as register_here does
        from feast.infra.data_sources.contrib.iceberg_catalog.iceberg_source import IcebergSource  # noqa: F401

        feature_store(settings).list_feature_views()
        tables = catalog_status(settings).get("tables") or []
        if tables:  # the catalog, its FileIO and one table's metadata read, as a registration resolves its table
            resolve_table(settings, tables[0].rsplit(".", 1)[-1])
        return os.getpid()


_writers: dict[str, Any] = {}
"""Writer actor handles by namespace and Ray driver job."""


def _writer(settings: Settings, *, fresh: bool = False) -> Any:
    """The writer actor's handle (created on first use; detached, restarted by Ray if it dies)."""
    import ray

    # a handle belongs to one driver session: a process that shut Ray down and joined again needs a new one
    key = f"{settings.ray_namespace}/{ray.get_runtime_context().get_job_id()}"
    if fresh or key not in _writers:
        _writers[key] = (
            ray.remote(RegistryWriter)
            .options(
                name=WRITER_ACTOR,
                namespace=settings.ray_namespace,
                lifetime="detached",
                get_if_exists=True,
                max_restarts=-1,
                max_task_retries=0,
                num_cpus=0,
                max_concurrency=1,
                runtime_env={"env_vars": settings.worker_env()},
            )
            .remote()
        )
    return _writers[key]


def warm_writer(settings: Settings) -> Any:
    """Start the writer actor and have it warm itself (``RegistryWriter.warm``); return the call's ``ObjectRef``."""
    return _writer(settings).warm.remote(settings)


def _serialised(settings: Settings, method: str, *args: Any) -> Any:
    """Run a write in the writer actor when this process is on the Ray cluster, else here (None)."""
    import ray
    from ray import exceptions as rex

    for attempt in (1, 2):
        try:
            handle = _writer(settings, fresh=attempt == 2)
            return ray.get(getattr(handle, method).remote(settings, *args), timeout=_WRITE_TIMEOUT_S)
        except rex.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, Exception):
                raise cause from None
            raise
        except rex.RayActorError as exc:
            if attempt == 2:
                raise ServiceUnavailable(
                    "the Feast registry writer is restarting; retry in a few seconds", detail={"actor": WRITER_ACTOR}
                ) from exc
            log.warning("Feast registry writer unavailable; getting it again for %s", method)
        except rex.GetTimeoutError as exc:
            raise ServiceUnavailable(
                f"the Feast registry writer did not answer in {_WRITE_TIMEOUT_S:.0f}s", detail={"actor": WRITER_ACTOR}
            ) from exc
    raise AssertionError("unreachable")


def _on_ray() -> bool:
    import ray

    return ray.is_initialized()


class FeatureRegistry:
    """The feature-store service behind ``/feast/*``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def store(self) -> FeatureStore:
        return feature_store(self.settings)

    def _get_view(self, name: str) -> FeatureView:
        from feast.errors import FeatureViewNotFoundException

        try:
            return self.store.get_feature_view(name)
        except FeatureViewNotFoundException as exc:
            raise NotFound(f"feature view {name!r} is not registered") from exc

    def register(self, spec: FeatureViewSpec) -> RegisterFeaturesResponse:
        """Create or confirm a feature view; an identical spec is a no-op, a different one a conflict.

        Runs in the writer actor when this process is on the Ray cluster, so parallel registrations
        (from any replica or job driver) never lose one another's views.
        """
        if _on_ray():
            return _serialised(self.settings, "register", spec)
        return self.register_here(spec)

    def register_here(self, spec: FeatureViewSpec) -> RegisterFeaturesResponse:
        """``register`` in this process, unserialised (the writer actor's body)."""
        from feast import Entity, FeatureView, Field
        from feast.errors import FeatureViewNotFoundException

        store = self.store
        try:
            existing = store.get_feature_view(spec.name)
        except FeatureViewNotFoundException:
            existing = None
        if existing is not None:
            old = (existing.tags or {}).get(SPEC_TAG)
            if _same_spec(old, spec):
                log.info("feature view %s unchanged", spec.name)
                return RegisterFeaturesResponse(
                    **_info(existing, self.settings).model_dump(),
                    status="unchanged",
                    registry_version=registry_version(store),
                )
            raise Conflict(
                f"feature view {spec.name!r} already exists with a different spec; "
                f"DELETE /feast/features/{spec.name} first or register under a new name",
                detail={"existing": FeatureViewSpec.model_validate_json(old).model_dump() if old else None},
            )

        table = resolve_table(self.settings, spec.source.table_name, format=spec.source.format)
        schema = table.schema
        _check_against_table(spec, schema)
        spec = _with_format(spec, table.format)  # later readers know how the table is stored
        entities = []
        for name in spec.entities:
            value_type = _entity_value_type(schema.field(name).type)
            try:
                current = store.get_entity(name)
                if current.value_type != value_type:
                    raise Conflict(f"entity {name!r} exists with type {current.value_type.name}, not {value_type.name}")
                entities.append(current)
            except Exception as exc:  # EntityNotFoundException: create it
                if isinstance(exc, Conflict):
                    raise
                entities.append(Entity(name=name, join_keys=[name], value_type=value_type))
        source = batch_source(self.settings, spec, table)
        view = FeatureView(
            name=spec.name,
            entities=entities,
            schema=[Field(name=f.name, dtype=feast_type(f.dtype), description=f.description) for f in spec.features],
            source=source,
            ttl=timedelta(seconds=spec.ttl_seconds) if spec.ttl_seconds else timedelta(0),
            online=False,
            description=spec.description,
            tags={**spec.tags, SPEC_TAG: spec.canonical()},
        )
        store.apply([*entities, view])
        log.info("registered feature view %s over %s table %s (snapshot %s)", spec.name, table.format, table.identifier, table.snapshot_id)
        return RegisterFeaturesResponse(
            **_info(self._get_view(spec.name), self.settings).model_dump(),
            status="registered",
            registry_version=registry_version(store),
        )

    def list(self) -> FeatureViewList:
        """Every feature view in the registry."""
        views = [_info(fv, self.settings) for fv in self.store.list_feature_views()]
        views.sort(key=lambda v: v.name)
        return FeatureViewList(feature_views=views, total=len(views))

    def get(self, name: str) -> FeatureViewInfo:
        """One feature view, or ``NotFound``."""
        return _info(self._get_view(name), self.settings)

    def delete(self, name: str) -> FeatureViewInfo:
        """Remove a feature view (its entities stay); return what was removed (through the writer actor)."""
        if _on_ray():
            return _serialised(self.settings, "delete", name)
        return self.delete_here(name)

    def delete_here(self, name: str) -> FeatureViewInfo:
        """``delete`` in this process, unserialised (the writer actor's body)."""
        info = self.get(name)
        self.store.delete_feature_view(name)
        log.info("deleted feature view %s", name)
        return info

    def record_materialization(self, name: str, start: datetime, end: datetime) -> None:
        """Record that ``name`` was materialized over ``[start, end]`` (through the writer actor on Ray)."""
        if _on_ray():
            _serialised(self.settings, "record_materialization", name, start, end)
            return
        self.record_materialization_here(name, start, end)

    def record_materialization_here(self, name: str, start: datetime, end: datetime) -> None:
        """``record_materialization`` in this process, unserialised (the writer actor's body)."""
        store = self.store
        store.registry.apply_materialization(self._get_view(name), store.project, start, end)

    def status(self) -> FeastStatus:
        """Registry, stores and counts; never raises."""
        base: dict[str, Any] = {
            "project": self.settings.feast_project,
            "registry": registry_location(self.settings),  # the S3 object, or the SQL URL without its password
            "offline_store": OFFLINE_STORE,
            "online_store": self.settings.feast_online_store,
            "catalog": catalog_status(self.settings),
        }
        try:
            store = self.store
            return FeastStatus(
                **base,
                registry_version=registry_version(store),
                feature_views=len(store.list_feature_views()),
                entities=len(store.list_entities()),
                healthy=True,
            )
        except Exception as exc:
            log.warning("Feast status check failed: %s", exc)
            return FeastStatus(**base, registry_version=None, feature_views=0, entities=0, healthy=False, error=type(exc).__name__)
