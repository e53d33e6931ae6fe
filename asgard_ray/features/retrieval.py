"""Point-in-time-correct training frames from Feast, with the label joined from the source table.

For every entity row (ids plus an event timestamp, default now) each feature takes its latest value
at or before that timestamp. The label (``churned`` in the seed) is usually not a registered feature,
so it is joined the same point-in-time way from the source table of the first view that has it.
Join keys and timestamps are returned apart from the model's feature columns.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from asgard_ray.config import Settings
from asgard_ray.errors import InvalidRequest, NotFound
from asgard_ray.features.registry import FeatureRegistry, registry_version
from asgard_ray.features.sources import table_schema

__all__ = ["EVENT_TIMESTAMP", "TrainingFrame", "build_entity_df", "build_training_frame", "start_retrieval", "training_columns"]

log = logging.getLogger(__name__)

EVENT_TIMESTAMP = "event_timestamp"


@dataclass
class TrainingFrame:
    """A retrieved frame and the roles of its columns."""

    df: pd.DataFrame
    join_keys: list[str]
    feature_columns: list[str]
    feature_views: list[str]
    timestamp_column: str = EVENT_TIMESTAMP
    label: str | None = None
    registry_version: str | None = None
    feature_dtypes: dict[str, str] = field(default_factory=dict)

    @property
    def X(self) -> pd.DataFrame:  # noqa: N802 - the usual name
        """The model's inputs, in the registered order."""
        return self.df[self.feature_columns]


def build_entity_df(
    entities: dict[str, list[Any]],
    join_keys: list[str],
    event_timestamps: list[Any] | None = None,
) -> pd.DataFrame:
    """Validate entity ids and timestamps and build Feast's entity frame."""
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


def _with_label(settings: Settings, store: Any, views: list[Any], label: str) -> tuple[int, Any]:
    """A transient (never applied) copy of the first view whose source table has ``label``, with it added.

    Joining the label through the same view as its features costs no extra pass over the data.
    Returns the index of the view to replace and its copy.
    """
    from feast import FeatureView, Field
    from pyarrow import types as pat

    from asgard_ray.features.registry import SPEC_TAG, feast_type
    from asgard_ray.features.specs import FeatureViewSpec

    for i, fv in enumerate(views):
        spec_json = (fv.tags or {}).get(SPEC_TAG)
        table = FeatureViewSpec.model_validate_json(spec_json).source.table_name if spec_json else fv.batch_source.name
        try:
            schema = table_schema(settings, table)
        except NotFound:
            continue
        if label in schema.names:
            arrow = schema.field(label).type
            dtype = "int64" if pat.is_integer(arrow) or pat.is_boolean(arrow) else "float64" if pat.is_floating(arrow) else "string"
            copy = FeatureView(
                name=fv.name,
                entities=[store.get_entity(name) for name in fv.entities],
                schema=[*fv.schema, Field(name=label, dtype=feast_type(dtype))],
                source=fv.batch_source,
                ttl=fv.ttl or timedelta(0),
            )
            return i, copy
    names = ", ".join(v.name for v in views)
    raise InvalidRequest(f"target column {label!r} is neither a feature of {names} nor a column of their source tables")


def build_training_frame(
    settings: Settings,
    feature_views: list[str],
    entities: dict[str, list[Any]] | pd.DataFrame,
    *,
    event_timestamps: list[Any] | None = None,
    label: str | None = None,
) -> TrainingFrame:
    """Retrieve features (and the label) point-in-time correct for the given entity rows.

    Args:
        settings: Platform settings.
        feature_views: Registered feature view names, in the order their features are used.
        entities: ``{join_key: [ids...]}`` (optionally with ``event_timestamp``), or an entity frame.
        event_timestamps: One timestamp per entity row; default now.
        label: Target column; taken from the features if registered, else from the source table.

    Returns:
        The frame with join keys, ``event_timestamp``, the feature columns and the label.
    """
    job, meta = start_retrieval(settings, feature_views, entities, event_timestamps=event_timestamps, label=label)
    df = job.to_df()
    df = df.sort_values("__row").drop(columns="__row").reset_index(drop=True)
    df = df[training_columns(meta)]
    log.info("retrieved %d rows x %d features from %s", len(df), len(meta.feature_columns), ",".join(feature_views))
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
) -> tuple[Any, TrainingFrame]:
    """Start Feast's point-in-time retrieval (the Ray offline store's job) without collecting it.

    ``build_training_frame`` collects the job into one pandas frame; data-parallel training takes
    ``job.to_ray_dataset()`` instead, so the rows stay in Ray's object store. The job's rows carry
    an ``__row`` column (the entity row's position).

    Returns:
        The retrieval job, and a ``TrainingFrame`` describing the columns whose ``df`` is the entity frame.
    """
    if not feature_views:
        raise InvalidRequest("feature_views is empty; name at least one registered feature view")
    registry = FeatureRegistry(settings)
    store = registry.store
    views = [registry._get_view(name) for name in feature_views]
    join_keys: list[str] = []
    for fv in views:
        for key in fv.join_keys if hasattr(fv, "join_keys") else fv.entities:
            if key not in join_keys:
                join_keys.append(key)

    if isinstance(entities, pd.DataFrame):
        entity_df = entities.copy()
        if EVENT_TIMESTAMP not in entity_df:
            entity_df[EVENT_TIMESTAMP] = pd.Timestamp(datetime.now(UTC))
        entity_df[EVENT_TIMESTAMP] = pd.to_datetime(entity_df[EVENT_TIMESTAMP], utc=True)
    else:
        entity_df = build_entity_df(entities, join_keys, event_timestamps)

    feature_columns: list[str] = []
    dtypes: dict[str, str] = {}
    refs: list[str] = []
    for fv in views:
        for f in fv.features:
            if f.name in feature_columns:
                raise InvalidRequest(f"feature {f.name!r} appears in more than one of {', '.join(feature_views)}")
            feature_columns.append(f.name)
            dtypes[f.name] = str(f.dtype)
            refs.append(f"{fv.name}:{f.name}")

    provider_views: list[Any] = list(views)  # Feast's provider takes FeatureView | OnDemandFeatureView
    if label and label not in feature_columns:
        index, extended = _with_label(settings, store, views, label)
        provider_views[index] = extended
        refs.append(f"{extended.name}:{label}")

    # Row order is not guaranteed by the offline store; an explicit row id restores it.
    entity_df = entity_df.reset_index(drop=True)
    entity_df["__row"] = range(len(entity_df))
    job = store._get_provider().get_historical_features(store.config, provider_views, refs, entity_df, store.registry, store.project, False)
    return job, TrainingFrame(
        df=entity_df.drop(columns="__row"),
        join_keys=join_keys,
        feature_columns=feature_columns,
        feature_views=list(feature_views),
        label=label,
        registry_version=registry_version(store),
        feature_dtypes=dtypes,
    )
