"""Point-in-time-correct training frames: the platform's as-of join over pinned gold snapshots.

For every entity row (ids plus an event timestamp, default now) each feature takes its latest value
at or before that timestamp (and within the view's TTL), the semantics of Feast's
``get_historical_features``. Feast stays the registry (which views, which features, which source
table); the rows are read by the platform: each gold table is pinned once per call
(``asgard_ray.gold.resolve_table``: the current snapshot, or the one ``as_of_snapshot`` names),
read through S3 from that snapshot alone (``GoldTable.read``), and joined with the vectorised as-of
index of ``asgard_ray.features.asof``. Feast's Ray offline store cannot read an Iceberg source, and
Feast's Iceberg path ignores snapshot pins; this path does both, and a re-run pinned to the same
snapshots reads exactly the same rows.

The label (``churned`` in the seed) is usually not a registered feature, so it is joined the same
point-in-time way (same TTL) from the source table of the first view that has it. Join keys and
timestamps are returned apart from the model's feature columns; the pins are on
``TrainingFrame.snapshots``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from asgard_ray.config import Settings
from asgard_ray.errors import InvalidRequest, NotFound
from asgard_ray.features.registry import SPEC_TAG, FeatureRegistry, registry_version
from asgard_ray.features.specs import FeatureViewSpec
from asgard_ray.gold import GoldFormat, GoldTable, pin_tables

if TYPE_CHECKING:
    from ray.data import Dataset

    from asgard_ray.features.asof import AsOfIndex

__all__ = [
    "EVENT_TIMESTAMP",
    "AsOfRetrievalJob",
    "TrainingFrame",
    "ViewRead",
    "build_entity_df",
    "build_training_frame",
    "describe_views",
    "pin_view_tables",
    "start_retrieval",
    "training_columns",
]

log = logging.getLogger(__name__)

EVENT_TIMESTAMP = "event_timestamp"
ROW = "__row"
"""The entity row's position, carried through the join so callers can restore the request's order."""
_BLOCK_ROWS = 50_000
"""Entity rows per Ray Data block of ``AsOfRetrievalJob.to_ray_dataset``."""


@dataclass
class TrainingFrame:
    """A retrieved frame, the roles of its columns, and the gold snapshots it was read from."""

    df: pd.DataFrame
    join_keys: list[str]
    feature_columns: list[str]
    feature_views: list[str]
    timestamp_column: str = EVENT_TIMESTAMP
    label: str | None = None
    registry_version: str | None = None
    feature_dtypes: dict[str, str] = field(default_factory=dict)
    snapshots: dict[str, int | None] = field(default_factory=dict)
    """Gold table -> the snapshot id read (None: a Parquet folder, which has no snapshots)."""

    @property
    def X(self) -> pd.DataFrame:  # noqa: N802 - the usual name
        """The model's inputs, in the registered order."""
        return self.df[self.feature_columns]


def build_entity_df(
    entities: dict[str, list[Any]],
    join_keys: list[str],
    event_timestamps: list[Any] | None = None,
) -> pd.DataFrame:
    """Validate entity ids and timestamps and build the entity frame (join keys + ``event_timestamp``)."""
    missing = [k for k in join_keys if k not in entities]
    if missing:
        raise InvalidRequest(f"entities lack join key(s) {', '.join(missing)} needed by the feature views")
    extra = [k for k in entities if k not in join_keys and k != EVENT_TIMESTAMP]
    if extra:
        raise InvalidRequest(f"entities name unknown key(s) {', '.join(extra)}; join keys are {', '.join(join_keys)}")
    if EVENT_TIMESTAMP in entities and event_timestamps is None:
        event_timestamps = entities[EVENT_TIMESTAMP]
    lengths = {k: len(entities[k]) for k in join_keys}
    n = next(iter(lengths.values()))
    if n == 0:
        raise InvalidRequest("entities are empty; give at least one id")
    if len(set(lengths.values())) != 1:
        raise InvalidRequest(f"entity lists differ in length: {lengths}")
    frame: dict[str, Any] = {}
    for key in join_keys:
        values = entities[key]
        if any(v is None or isinstance(v, bool | float | dict | list) for v in values):
            raise InvalidRequest(f"entity {key!r} holds a null, boolean, float or nested value; ids are integers or strings")
        kinds = {type(v) for v in values}
        if len(kinds) > 1:
            raise InvalidRequest(f"entity {key!r} mixes id types {sorted(k.__name__ for k in kinds)}")
        frame[key] = pd.array(values, dtype="int64" if kinds == {int} else "string")
    if event_timestamps is None:
        frame[EVENT_TIMESTAMP] = pd.Timestamp(datetime.now(UTC))
    else:
        if len(event_timestamps) != n:
            raise InvalidRequest(f"event_timestamps has {len(event_timestamps)} values for {n} entity rows")
        try:
            ts = pd.to_datetime(pd.Series(event_timestamps), utc=True)
        except (ValueError, TypeError) as exc:
            raise InvalidRequest(f"event_timestamps are not ISO-8601 timestamps: {exc}") from exc
        if ts.isna().any():
            raise InvalidRequest("event_timestamps hold a null")
        frame[EVENT_TIMESTAMP] = ts.to_numpy()
    df = pd.DataFrame(frame)
    df[EVENT_TIMESTAMP] = pd.to_datetime(df[EVENT_TIMESTAMP], utc=True)
    return df


@dataclass
class ViewRead:
    """What one feature view reads from its gold table: keys, event time, TTL and value columns."""

    view: str
    table_name: str
    format: GoldFormat | None
    join_keys: list[str]
    timestamp_field: str
    columns: list[str]
    """Feature columns, then the label when this view carries it."""
    ttl_seconds: float | None = None
    created_column: str | None = None
    table: GoldTable | None = None
    """The pinned table (set by ``start_retrieval``)."""


def _view_read(fv: Any) -> ViewRead:
    """The source of a Feast view: the stored spec (``SPEC_TAG``), else Feast's own fields (``feast apply``)."""
    spec_json = (fv.tags or {}).get(SPEC_TAG)
    keys = list(fv.join_keys) if hasattr(fv, "join_keys") else list(fv.entities)
    ttl = fv.ttl.total_seconds() if fv.ttl else None
    features = [f.name for f in fv.features]
    if spec_json:
        spec = FeatureViewSpec.model_validate_json(spec_json)
        src = spec.source
        return ViewRead(fv.name, src.table_name, src.format, keys, src.timestamp_field, features, ttl or None, src.created_timestamp_column)
    source = fv.batch_source
    if source is None:
        raise NotFound(f"feature view {fv.name!r} has no batch source to read")
    created = getattr(source, "created_timestamp_column", None) or None
    return ViewRead(fv.name, source.name or fv.name, None, keys, source.timestamp_field, features, ttl or None, created)


def _pin(
    settings: Settings, reads: list[ViewRead], as_of_snapshot: dict[str, int] | None, tables: dict[str, GoldTable] | None
) -> dict[str, GoldTable]:
    """Pin each table the views read, once (``gold.pin_tables``); the first view's format wins."""
    formats = {r.table_name: r.format for r in reversed(reads)}
    readers = f"feature view(s) {', '.join(r.view for r in reads)} do"
    return pin_tables(settings, [r.table_name for r in reads], formats, as_of_snapshot, readers=readers, given=tables)


def pin_view_tables(settings: Settings, feature_views: list[str], as_of_snapshot: dict[str, int] | None = None) -> dict[str, GoldTable]:
    """Pin the gold tables of registered feature views (what ``start_retrieval`` does first).

    A caller that must check a request's ``as_of_snapshot`` before starting a job (4xx early) calls
    this; its result can be passed to ``build_training_frame(tables=...)``.

    Raises:
        NotFound: An unknown view, table or snapshot.
        InvalidRequest: ``as_of_snapshot`` names a table the views do not read.
    """
    registry = FeatureRegistry(settings)
    reads = [_view_read(registry._get_view(name)) for name in feature_views]
    return _pin(settings, reads, as_of_snapshot, None)


def describe_views(settings: Settings, feature_views: list[str], as_of_snapshot: dict[str, int] | None = None) -> list[ViewRead]:
    """What each registered view reads (keys, event time, created column, features), with its table pinned.

    The caller sees every column's role before any job starts: training checks its target column
    against it (``training.target``).

    Raises:
        NotFound: An unknown view, table or snapshot.
        InvalidRequest: ``as_of_snapshot`` names a table the views do not read.
    """
    registry = FeatureRegistry(settings)
    reads = [_view_read(registry._get_view(name)) for name in feature_views]
    pinned = _pin(settings, reads, as_of_snapshot, None)
    for read in reads:
        read.table = pinned[read.table_name]
    return reads


def _attach_label(reads: list[ViewRead], label: str) -> None:
    """Add ``label`` to the first view whose pinned table has it (the same pass reads it)."""
    for read in reads:
        assert read.table is not None
        if label in read.table.schema.names:
            read.columns = [*read.columns, label]
            return
    views = ", ".join(r.view for r in reads)
    raise InvalidRequest(f"target column {label!r} is neither a feature of {views} nor a column of their source tables")


def _check_columns(read: ViewRead) -> None:
    assert read.table is not None
    schema = read.table.schema
    missing = [c for c in [*read.join_keys, read.timestamp_field, *read.columns] if c not in schema.names]
    if missing:
        at = f"snapshot {read.table.snapshot_id} of " if read.table.snapshot_id is not None else ""
        raise InvalidRequest(
            f"feature view {read.view}: column(s) {', '.join(missing)} are not in {at}gold table {read.table.identifier}",
            detail={"feature_view": read.view, "table_name": read.table.name, "snapshot_id": read.table.snapshot_id, "missing": missing},
        )


def build_index(settings: Settings, read: ViewRead) -> AsOfIndex:
    """Read a view's columns from its pinned table and sort them for as-of lookups."""
    from asgard_ray.features.asof import build_asof_index

    assert read.table is not None
    created = read.created_column if read.created_column and read.created_column in read.table.schema.names else None
    cols = list(dict.fromkeys([*read.join_keys, read.timestamp_field, *read.columns, *([created] if created else [])]))
    frame = read.table.read(settings, cols).to_pandas()
    if created:  # on equal event times the latest created row wins (the index keeps the last stored row)
        frame = frame.sort_values(created, kind="stable", na_position="first").reset_index(drop=True)
    return build_asof_index(frame, read.join_keys, read.timestamp_field, read.columns, read.ttl_seconds)


def _lookup(entities: pd.DataFrame, indexes: list[AsOfIndex], as_float: frozenset[str]) -> pd.DataFrame:
    """The entity rows with every index's values as of their timestamps (``as_float`` columns cast to float64)."""
    from asgard_ray.features.asof import asof_lookup

    out = entities.reset_index(drop=True)
    for index in indexes:
        looked = asof_lookup(index, out, EVENT_TIMESTAMP)
        for col in looked.columns:
            values = looked[col]
            out[col] = values.astype("float64") if col in as_float and values.dtype.kind in "iub" else values
    return out


def _lookup_batch(batch: pd.DataFrame, *, box: list[Any], as_float: frozenset[str]) -> pd.DataFrame:
    import ray

    return _lookup(batch, ray.get(box[0]), as_float)


class AsOfRetrievalJob:
    """The as-of join of an entity frame against pinned gold tables, collected on demand.

    ``to_df`` joins in this process; ``to_ray_dataset`` joins in Ray Data tasks against indexes in
    the object store, so the joined rows stay in Ray. Both carry the ``__row`` column (the entity
    row's position) and give the same values and dtypes: integer and boolean columns that get a null
    for any entity row become float64, as Feast does.
    """

    def __init__(self, settings: Settings, entity_df: pd.DataFrame, reads: list[ViewRead]) -> None:
        self.settings = settings
        self.entity_df = entity_df
        self.reads = reads
        self._indexes: list[AsOfIndex] | None = None

    def indexes(self) -> list[AsOfIndex]:
        """One as-of index per view, read once from its pinned table."""
        if self._indexes is None:
            self._indexes = [build_index(self.settings, r) for r in self.reads]
        return self._indexes

    def to_df(self) -> pd.DataFrame:
        """The joined frame: entity columns, ``__row``, then each view's columns."""
        return _lookup(self.entity_df, self.indexes(), frozenset())

    def _float_columns(self) -> frozenset[str]:
        """Integer/boolean columns of the views where some entity row finds no value (then float64)."""
        from asgard_ray.features.asof import asof_lookup

        cols: set[str] = set()
        for index in self.indexes():
            probe = replace(index, feature_columns=["__hit"], values={"__hit": np.zeros(index.rows, dtype=np.int8)})
            if asof_lookup(probe, self.entity_df, EVENT_TIMESTAMP)["__hit"].dtype.kind == "f":
                cols.update(c for c in index.feature_columns if index.values[c].dtype.kind in "iub")
        return frozenset(cols)

    def to_ray_dataset(self) -> Dataset:
        """The joined rows as a Ray Dataset (the lookup runs in Ray tasks; the indexes are shared)."""
        import ray

        as_float = self._float_columns()
        box = [ray.put(self.indexes())]
        parts = [self.entity_df.iloc[i : i + _BLOCK_ROWS] for i in range(0, len(self.entity_df), _BLOCK_ROWS)]
        return ray.data.from_pandas(parts).map_batches(
            _lookup_batch,  # type: ignore[arg-type]  # Ray stubs cannot type fn_kwargs functions
            batch_format="pandas",
            batch_size=None,
            fn_kwargs={"box": box, "as_float": as_float},
        )


def build_training_frame(
    settings: Settings,
    feature_views: list[str],
    entities: dict[str, list[Any]] | pd.DataFrame,
    *,
    event_timestamps: list[Any] | None = None,
    label: str | None = None,
    as_of_snapshot: dict[str, int] | None = None,
    tables: dict[str, GoldTable] | None = None,
) -> TrainingFrame:
    """Retrieve features (and the label) point-in-time correct for the given entity rows.

    Args:
        settings: Platform settings.
        feature_views: Registered feature view names, in the order their features are used.
        entities: ``{join_key: [ids...]}`` (optionally with ``event_timestamp``), or an entity frame.
        event_timestamps: One timestamp per entity row; default now.
        label: Target column; taken from the features if registered, else from the source table.
        as_of_snapshot: Gold table -> snapshot id to read; other tables read their current snapshot.
        tables: Tables already pinned (``pin_view_tables``), used as they are.

    Returns:
        The frame with join keys, ``event_timestamp``, the feature columns and the label, in the
        entity rows' order; ``snapshots`` names the snapshot of each table read.
    """
    job, meta = start_retrieval(
        settings, feature_views, entities, event_timestamps=event_timestamps, label=label, as_of_snapshot=as_of_snapshot, tables=tables
    )
    df = job.to_df()
    df = df.sort_values(ROW).drop(columns=ROW).reset_index(drop=True)
    df = df[training_columns(meta)]
    log.info(
        "retrieved %d rows x %d features from %s (snapshots %s)",
        len(df),
        len(meta.feature_columns),
        ",".join(feature_views),
        meta.snapshots,
    )
    meta.df = df
    return meta


def training_columns(meta: TrainingFrame) -> list[str]:
    """The retrieved columns in order: join keys, ``event_timestamp``, features, then the label."""
    label = meta.label
    return [*meta.join_keys, EVENT_TIMESTAMP, *meta.feature_columns] + ([label] if label and label not in meta.feature_columns else [])


def start_retrieval(
    settings: Settings,
    feature_views: list[str],
    entities: dict[str, list[Any]] | pd.DataFrame,
    *,
    event_timestamps: list[Any] | None = None,
    label: str | None = None,
    as_of_snapshot: dict[str, int] | None = None,
    tables: dict[str, GoldTable] | None = None,
) -> tuple[AsOfRetrievalJob, TrainingFrame]:
    """Pin the views' gold tables and prepare the point-in-time join without collecting it.

    ``build_training_frame`` collects the job into one pandas frame; data-parallel training takes
    ``job.to_ray_dataset()`` instead, so the rows stay in Ray's object store. The job's rows carry
    an ``__row`` column (the entity row's position).

    Returns:
        The retrieval job, and a ``TrainingFrame`` describing the columns (its ``df`` is the entity
        frame) and the pinned ``snapshots``.

    Raises:
        InvalidRequest: No views, bad entities, a feature in two views, an unknown label, a pin of a
            table the views do not read, or a column missing from a pinned snapshot.
        NotFound: An unknown view, table or snapshot.
    """
    if not feature_views:
        raise InvalidRequest("feature_views is empty; name at least one registered feature view")
    registry = FeatureRegistry(settings)
    views = [registry._get_view(name) for name in feature_views]
    reads = [_view_read(fv) for fv in views]
    join_keys: list[str] = list(dict.fromkeys(k for r in reads for k in r.join_keys))

    if isinstance(entities, pd.DataFrame):
        missing = [k for k in join_keys if k not in entities]
        if missing:
            raise InvalidRequest(f"the entity frame lacks join key(s) {', '.join(missing)} needed by the feature views")
        entity_df = entities.copy()
        if EVENT_TIMESTAMP not in entity_df:
            entity_df[EVENT_TIMESTAMP] = pd.Timestamp(datetime.now(UTC))
        entity_df[EVENT_TIMESTAMP] = pd.to_datetime(entity_df[EVENT_TIMESTAMP], utc=True)
    else:
        entity_df = build_entity_df(entities, join_keys, event_timestamps)

    feature_columns: list[str] = []
    dtypes: dict[str, str] = {}
    for fv in views:
        for f in fv.features:
            if f.name in feature_columns:
                raise InvalidRequest(f"feature {f.name!r} appears in more than one of {', '.join(feature_views)}")
            feature_columns.append(f.name)
            dtypes[f.name] = str(f.dtype)

    pinned = _pin(settings, reads, as_of_snapshot, tables)
    for read in reads:
        read.table = pinned[read.table_name]
    if label and label not in feature_columns:
        _attach_label(reads, label)
    for read in reads:
        _check_columns(read)

    entity_df = entity_df.reset_index(drop=True)
    entity_df[ROW] = np.arange(len(entity_df), dtype=np.int64)
    meta = TrainingFrame(
        df=entity_df.drop(columns=ROW),
        join_keys=join_keys,
        feature_columns=feature_columns,
        feature_views=list(feature_views),
        label=label,
        registry_version=registry_version(registry.store),
        feature_dtypes=dtypes,
        snapshots={name: table.snapshot_id for name, table in pinned.items()},
    )
    return AsOfRetrievalJob(settings, entity_df, reads), meta
