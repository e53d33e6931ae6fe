"""Validate a batch-scoring request and pin everything the job needs into a ``ScoringPlan``.

All checks that can fail fast run here, on the API replica (or the ``jobs/`` entrypoint) before a
job is submitted: the model and version (404), the output location (422) and whether it is free
(409: leased by another job, foreign files, or another job's output without
``overwrite``), the feature views (404) and whether they still serve every feature the model was trained on
(422 naming the missing ones), the entity ids (422) and the inline size cap (413).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from asgard_ray.config import Settings
from asgard_ray.errors import Conflict, InvalidRequest, PayloadTooLarge
from asgard_ray.features.retrieval import EVENT_TIMESTAMP, build_entity_df
from asgard_ray.gold import GoldTable, pin_tables
from asgard_ray.scoring.model import ResolvedModel, resolve_model
from asgard_ray.scoring.schemas import MAX_INLINE_ENTITIES, BatchScoreRequest
from asgard_ray.scoring.sink import check_output_path, check_table_columns, foreign_conflict, output_state, split_table, staging_path
from asgard_ray.storage import Access, current_lease, list_files, resolve, resolve_location

__all__ = ["SYNC_MAX_ROWS", "ScoringPlan", "SourcePlan", "TablePin", "ViewPlan", "prepare_plan"]

log = logging.getLogger(__name__)

SYNC_MAX_ROWS = 10_000
"""Jobs up to this many rows answer synchronously (the seed's ``"status": "completed"``); larger get 202."""


class TablePin(BaseModel):
    """A gold table pinned when the plan was made: every attempt of the job reads exactly this state."""

    name: str
    format: Literal["iceberg", "parquet"]
    location: str
    """Iceberg: the metadata file of the pinned state (read through S3 alone); Parquet: the folder."""
    snapshot_id: int | None = None
    namespace: str

    @classmethod
    def of(cls, table: GoldTable) -> TablePin:
        """The pin of a resolved table."""
        return cls(name=table.name, format=table.format, location=table.location, snapshot_id=table.snapshot_id, namespace=table.namespace)

    def gold(self) -> GoldTable:
        """The pinned table, for ``read`` / ``to_ray`` (which do not use the schema, so it is left empty)."""
        return GoldTable(self.name, self.format, self.location, pa.schema([]), self.snapshot_id, self.namespace)


class ViewPlan(BaseModel):
    """One feature view's share of the model's features, and where its source table lives."""

    name: str
    join_keys: list[str]
    table_name: str
    timestamp_field: str
    ttl_seconds: int | None = None
    features: list[str]
    table_format: Literal["iceberg", "parquet"] | None = None
    """The view's ``source.format`` (None: Iceberg when the catalog has the table, else a Parquet folder)."""
    pin: TablePin | None = None


class SourcePlan(BaseModel):
    """Entity rows stored as Parquet."""

    uri: str
    files: list[str]
    columns: list[str]
    timestamp_column: str | None
    features_included: bool
    pin: TablePin | None = None
    """Set for ``entities_source.table_name``: the pinned gold table (then ``files`` is empty)."""


class ScoringPlan(BaseModel):
    """Everything a scoring job needs, resolved and validated."""

    model_config = ConfigDict(protected_namespaces=())

    job_id: str
    model: ResolvedModel
    feature_views: list[str]
    views: list[ViewPlan] = Field(default_factory=list)
    feature_columns: list[str]
    feature_dtypes: dict[str, str] = Field(default_factory=dict)
    join_keys: list[str]
    entities: dict[str, list[Any]] | None = None
    source: SourcePlan | None = None
    output_path: str
    """The Parquet output (the request's, or a per-job staging prefix when only ``output_table`` is given)."""
    output_parquet: bool = True
    """Whether the request asked for ``output_path`` (False: staging for ``output_table`` only)."""
    output_table: str | None = None
    """``<namespace>.<table>``: the Iceberg table the job appends its rows to, after the Parquet commit."""
    feature_snapshots: dict[str, int | None] = Field(default_factory=dict)
    """Gold table -> the snapshot id this job reads (None: a Parquet folder, which has no snapshots)."""
    overwrite: bool = False
    rows_total: int
    run_async: bool = False
    feast_registry_version: str | None = None
    flavor: str | None = None

    @property
    def sync(self) -> bool:
        """Whether the caller waits for the job."""
        return not self.run_async and self.rows_total <= SYNC_MAX_ROWS


def _views(settings: Settings, names: list[str], model: ResolvedModel) -> tuple[list[ViewPlan], dict[str, str], str | None]:
    from asgard_ray.features import FeatureRegistry, registry_version

    registry = FeatureRegistry(settings)
    plans: list[ViewPlan] = []
    dtypes: dict[str, str] = {}
    served: set[str] = set()
    for name in names:
        info = registry.get(name)  # NotFound -> 404
        mine = [f.name for f in info.features if f.name in model.feature_columns and f.name not in served]
        served.update(mine)
        dtypes.update({f.name: f.dtype for f in info.features if f.name in mine})
        plans.append(
            ViewPlan(
                name=name,
                join_keys=list(info.entities),
                table_name=info.source.table_name,
                timestamp_field=info.source.timestamp_field,
                ttl_seconds=info.ttl_seconds,
                features=mine,
                table_format=info.source.format,
            )
        )
    missing = [c for c in model.feature_columns if c not in served]
    if missing:
        raise InvalidRequest(
            f"feature(s) {', '.join(missing)} that model {model.name} v{model.version} was trained on are not served by "
            f"feature view(s) {', '.join(names)}; add the view(s) that provide them "
            f"(trained with {', '.join(model.feature_views) or 'unknown'})",
            detail={"missing_features": missing, "feature_views": names, "model_feature_views": model.feature_views},
        )
    return plans, dtypes, registry_version(registry.store)


def _source(
    settings: Settings, request: BatchScoreRequest, join_keys: list[str], model: ResolvedModel, gold: GoldTable | None
) -> tuple[SourcePlan, int, dict[str, str]]:
    spec = request.entities_source
    assert spec is not None
    files: list[str] = []
    if gold is not None and gold.format == "iceberg":
        uri = gold.identifier
        schema = gold.schema
    else:
        if gold is not None:
            uri = gold.location
        else:
            uri = resolve_location(settings, spec.path, access=Access.READ, field="entities_source.path").uri
        files = [
            f
            for f in list_files(settings, uri)
            if f.endswith(".parquet") and "/_" not in f and not f.rsplit("/", 1)[-1].startswith(("_", "."))
        ]
        if not files:
            raise InvalidRequest(f"entities_source {uri} holds no Parquet files; write the entity rows there first")
        fs, _ = resolve(settings, uri)
        schema = pq.read_schema(fs.open_input_file(files[0]))
    columns = list(schema.names)
    missing = [k for k in join_keys if k not in columns]
    if missing:
        raise InvalidRequest(f"entities_source {uri} lacks join key column(s) {', '.join(missing)}", detail={"columns": columns})
    ts = spec.event_timestamp_column or (EVENT_TIMESTAMP if EVENT_TIMESTAMP in columns else None)
    if ts is not None and ts not in columns:
        raise InvalidRequest(f"entities_source {uri} has no column {ts!r} for event timestamps", detail={"columns": columns})
    dtypes: dict[str, str] = {}
    if spec.features_included:
        absent = [c for c in model.feature_columns if c not in columns]
        if absent:
            raise InvalidRequest(
                f"entities_source {uri} is marked features_included but lacks feature(s) {', '.join(absent)} "
                f"that model {model.name} v{model.version} was trained on",
                detail={"missing_features": absent, "columns": columns},
            )
        for c in model.feature_columns:
            t = schema.field(c).type
            dtypes[c] = "int64" if str(t).startswith(("int", "uint")) else "float64" if str(t) in ("double", "float") else str(t)
    if gold is not None and gold.format == "iceberg":
        rows = gold.read(settings, join_keys[:1]).num_rows
    else:
        rows = 0
        for f in files:
            with fs.open_input_file(f) as handle:
                rows += pq.ParquetFile(handle).metadata.num_rows
    if rows == 0:
        raise InvalidRequest(f"entities_source {uri} holds no rows")
    pin = TablePin.of(gold) if gold is not None else None
    plan = SourcePlan(uri=uri, files=files, columns=columns, timestamp_column=ts, features_included=spec.features_included, pin=pin)
    return plan, rows, dtypes


def _check_free(settings: Settings, output_path: str, job_id: str, overwrite: bool) -> None:
    """Fail fast (409) when the prefix is leased by another job, holds foreign files, or holds another
    job's committed output without ``overwrite``. The job re-checks all of it under its lease."""
    holder = current_lease(settings, output_path)
    if holder is not None and holder.job_id != job_id:
        raise Conflict(
            f"output_path {output_path} is being written by job {holder.job_id}; wait for that job to finish or choose another output_path",
            detail={"output_path": output_path, "holder_job_id": holder.job_id},
        )
    state = output_state(settings, output_path, job_id)
    if state.foreign:
        raise foreign_conflict(output_path, state.foreign)
    owner = state.committed_job_id
    if owner is not None and owner != job_id and not overwrite:
        raise Conflict(
            f"output_path {output_path} already holds the committed output of job {owner}; "
            'choose another output_path or send "overwrite": true to replace it',
            detail={"output_path": output_path, "job_id": owner},
        )


def prepare_plan(settings: Settings, request: BatchScoreRequest, job_id: str) -> ScoringPlan:
    """Validate ``request`` and resolve it into a plan for job ``job_id``.

    Raises:
        NotFound: Unknown model, version, alias or feature view.
        InvalidRequest: Bad output path, missing features, malformed ids, unusable entities_source.
        PayloadTooLarge: More inline entity rows than ``MAX_INLINE_ENTITIES``.
        Conflict: The output prefix holds other data and ``overwrite`` is false.
    """
    if request.output_path is not None:
        output_path = check_output_path(settings, request.output_path)
    elif request.output_table is not None:
        output_path = staging_path(settings, request.output_table, job_id)
    else:
        raise InvalidRequest("give output_path (Parquet on S3), output_table (an Iceberg table) or both")
    if request.output_table is not None:
        split_table(request.output_table)  # 422 on a bad name
    if request.entities_df is not None:
        lengths = {len(v) for v in request.entities_df.values() if isinstance(v, list)}
        if lengths and max(lengths) > MAX_INLINE_ENTITIES:
            raise PayloadTooLarge(
                f"entities_df has {max(lengths):,} rows; the inline limit is {MAX_INLINE_ENTITIES:,}. "
                'Write the ids to Parquet on S3 and send them as entities_source: {"path": "s3://..."}',
                detail={"rows": max(lengths), "limit": MAX_INLINE_ENTITIES},
            )
    model = resolve_model(settings, request.model_name, request.model_version)
    names = request.feature_views or model.feature_views
    source = request.entities_source
    views: list[ViewPlan] = []
    dtypes: dict[str, str] = {}
    feast_version: str | None = None
    if not (source and source.features_included):
        if not names:
            raise InvalidRequest(f"model {model.name} v{model.version} records no feature views; name them in feature_views")
        views, dtypes, feast_version = _views(settings, names, model)
    join_keys = list(model.join_keys) or list(dict.fromkeys(k for v in views for k in v.join_keys))
    if not join_keys:
        raise InvalidRequest("cannot tell the entity join keys: the model records none and no feature view was given")

    # Pin every gold table the job reads, once: a retried attempt reads exactly these snapshots.
    read_views = [v for v in views if v.features]
    entity_table = source.table_name if source is not None else None
    tables = [v.table_name for v in read_views] + ([entity_table] if entity_table else [])
    formats = {v.table_name: v.table_format for v in read_views}
    pins = pin_tables(settings, tables, formats, request.as_of_snapshot, readers="this job does")
    for v in read_views:
        v.pin = TablePin.of(pins[v.table_name])

    entities: dict[str, list[Any]] | None = None
    source_plan: SourcePlan | None = None
    if request.entities_df is not None:
        frame = build_entity_df(request.entities_df, join_keys)  # malformed ids -> 422
        entities = {k: list(v) for k, v in request.entities_df.items()}
        rows = len(frame)
    else:
        gold = pins[entity_table] if entity_table else None
        source_plan, rows, src_dtypes = _source(settings, request, join_keys, model, gold)
        dtypes.update(src_dtypes)
    _check_free(settings, output_path, job_id, request.overwrite)
    if request.output_table is not None:
        check_table_columns(settings, request.output_table, _table_columns(model, join_keys))
    return ScoringPlan(
        job_id=job_id,
        model=model,
        feature_views=list(names or []),
        views=views,
        feature_columns=list(model.feature_columns),
        feature_dtypes=dtypes,
        join_keys=join_keys,
        entities=entities,
        source=source_plan,
        output_path=output_path,
        output_parquet=request.output_path is not None,
        output_table=request.output_table,
        feature_snapshots={name: table.snapshot_id for name, table in pins.items()},
        overwrite=request.overwrite,
        rows_total=int(rows),
        run_async=request.run_async,
        feast_registry_version=feast_version,
    )


def _table_columns(model: ResolvedModel, join_keys: list[str]) -> list[str]:
    """The columns a job's rows have in ``output_table`` (probability columns aside)."""
    core = [*join_keys, EVENT_TIMESTAMP, *model.feature_columns, "prediction", "model_name", "run_id", "job_id", "scored_at"]
    return [*core, "model_version", "score_date"]


def entity_frame(plan: ScoringPlan) -> pd.DataFrame:
    """The inline entity rows as Feast's entity frame (join keys + ``event_timestamp``)."""
    assert plan.entities is not None
    return build_entity_df(plan.entities, plan.join_keys)
