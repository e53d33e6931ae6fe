"""Training on pinned gold snapshots: the platform's as-of join against Feast and merge_asof, reproducible
re-runs after an append, the parent run's snapshot tags, and the registered version's snapshot tag.

Real S3 server, real Iceberg catalog, real Ray, MLflow server and Feast registry. The tables and views
here have their own names (a random suffix), so the session's demo table is left alone.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from asgard_ray import gold, lineage
from asgard_ray.config import Settings
from asgard_ray.errors import InvalidRequest, NotFound
from asgard_ray.features import FeatureRegistry, FeatureViewSpec, build_training_frame, feature_store
from asgard_ray.features.retrieval import ROW, start_retrieval
from asgard_ray.registry import ModelRegistry, RegisterModelRequest
from asgard_ray.storage import resolve
from asgard_ray.training import TrainingService, TrainRequest, TrainResponse

pytestmark = pytest.mark.integration

SUFFIX = uuid.uuid4().hex[:8]
TABLE = f"it_tg_{SUFFIX}"
PARQUET_TABLE = f"it_tgpq_{SUFFIX}"
VIEW = f"it_tg_view_{SUFFIX}"
PARQUET_VIEW = f"it_tgpq_view_{SUFFIX}"
MODEL = f"it_tg_model_{SUFFIX}"
FEATURES = ["orders", "spend", "tickets"]
LOADS = [pd.Timestamp(d, tz="UTC") for d in ("2025-01-01", "2025-02-01", "2025-03-01")]
LATE_LOAD = pd.Timestamp("2025-04-01", tz="UTC")
N = 80


def load(ts: pd.Timestamp, seed: int) -> pd.DataFrame:
    """One monthly load: every customer but a few (absent customers get nulls before they appear)."""
    rng = np.random.default_rng(seed)
    ids = np.array([i for i in range(1, N + 1) if not (ts == LOADS[0] and i % 7 == 0)], dtype=np.int64)
    n = len(ids)
    orders = rng.poisson(5, n).astype(np.int64)
    tickets = rng.poisson(1, n).astype(np.int64)
    spend = np.round(rng.lognormal(3, 0.5, n), 2)
    logit = -0.5 - 0.3 * orders + 0.9 * tickets + rng.normal(0, 0.5, n)
    return pd.DataFrame(
        {
            "customer_id": ids,
            "event_timestamp": pd.Series([ts] * n).astype("datetime64[us, UTC]"),
            "orders": orders,
            "spend": spend,
            "tickets": tickets,
            "churned": (logit > -1.5).astype(np.int64),
        }
    )


def spec(name: str, table: str, fmt: str) -> FeatureViewSpec:
    return FeatureViewSpec.model_validate(
        {
            "name": name,
            "entities": ["customer_id"],
            "features": [
                {"name": "orders", "dtype": "int64"},
                {"name": "spend", "dtype": "float64"},
                {"name": "tickets", "dtype": "int64"},
            ],
            "source": {"table_name": table, "timestamp_field": "event_timestamp", "format": fmt},
        }
    )


@pytest.fixture(scope="module")
def snapshots(settings: Settings, ray_session: None) -> list[int]:
    """The Iceberg table (one snapshot per load), the same rows as a Parquet folder, and a view over each."""
    ids = [gold.write_table(settings, TABLE, load(ts, i), summary={"asgard.load": f"{ts:%Y-%m}"}) for i, ts in enumerate(LOADS)]
    fs, path = resolve(settings, settings.gold_uri(PARQUET_TABLE))
    for i, ts in enumerate(LOADS):
        pq.write_table(pa.Table.from_pandas(load(ts, i), preserve_index=False), f"{path}/part-{ts:%Y%m%d}.parquet", filesystem=fs)
    registry = FeatureRegistry(settings)
    registry.register(spec(VIEW, TABLE, "iceberg"))
    registry.register(spec(PARQUET_VIEW, PARQUET_TABLE, "parquet"))
    return ids


def entity_rows() -> tuple[list[int], list[str]]:
    """Known and unknown ids at timestamps before, on, between and after the loads (no repeated row)."""
    stamps = ["2024-12-15T00:00:00Z", "2025-01-01T00:00:00Z", "2025-01-20T12:00:00Z", "2025-02-01T00:00:00Z", "2025-06-01T00:00:00Z"]
    ids, ts = [], []
    for i in [*range(1, N + 1), 9998, 9999]:
        for j in (i % len(stamps), (i + 2) % len(stamps)):
            ids.append(i)
            ts.append(stamps[j])
    return ids, ts


def merge_asof_expected(table: pd.DataFrame, ids: list[int], ts: list[str], columns: list[str]) -> pd.DataFrame:
    """pandas ``merge_asof`` of the entity rows on ``table``, in the entity rows' order."""
    entity = pd.DataFrame({"customer_id": np.asarray(ids, dtype=np.int64), "event_timestamp": pd.to_datetime(ts, utc=True)})
    entity["event_timestamp"] = entity["event_timestamp"].astype("datetime64[us, UTC]")
    right = table.sort_values("event_timestamp", kind="stable")
    merged = pd.merge_asof(
        entity.reset_index().sort_values("event_timestamp", kind="stable"),
        right,
        on="event_timestamp",
        by="customer_id",
        direction="backward",
    )
    return merged.sort_values("index")[columns].reset_index(drop=True)


def test_frame_equals_feast_get_historical_features_on_a_parquet_view(settings: Settings, snapshots: list[int]) -> None:
    ids, ts = entity_rows()
    frame = build_training_frame(settings, [PARQUET_VIEW], {"customer_id": ids}, event_timestamps=ts)
    assert frame.snapshots == {PARQUET_TABLE: None}  # a Parquet folder has no snapshots

    entity_df = pd.DataFrame({"customer_id": np.asarray(ids, dtype=np.int64), "event_timestamp": pd.to_datetime(ts, utc=True)})
    feast = feature_store(settings).get_historical_features(entity_df=entity_df, features=[f"{PARQUET_VIEW}:{f}" for f in FEATURES]).to_df()
    assert len(feast) == len(ids)
    feast["event_timestamp"] = pd.to_datetime(feast["event_timestamp"], utc=True)
    keys = ["customer_id", "event_timestamp"]
    ours = frame.df.assign(event_timestamp=frame.df["event_timestamp"].dt.as_unit("ns")).sort_values(keys).reset_index(drop=True)
    theirs = feast.assign(event_timestamp=feast["event_timestamp"].dt.as_unit("ns")).sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(ours[keys], theirs[keys], check_dtype=True)
    # same values; Feast 0.67's Ray store gives an integer column with nulls as pandas' nullable Int64,
    # the platform as float64 (NaN), the dtype Feast's other offline stores and the scoring path give
    assert {str(theirs[c].dtype) for c in FEATURES} <= {"Int64", "float64"}
    floats = {c: "float64" for c in FEATURES}
    pd.testing.assert_frame_equal(ours[FEATURES], theirs[FEATURES].astype(floats), check_dtype=True)
    # the cases are really there: unknown ids and rows before the first load are null, the rest are not
    before = (
        (ours["customer_id"] > N)
        | (ours["event_timestamp"] < LOADS[0])
        | ((ours["customer_id"] % 7 == 0) & (ours["event_timestamp"] < LOADS[1]))
    )
    assert ours.loc[before, FEATURES].isna().all().all() and before.sum() > 10
    assert ours.loc[~before, FEATURES].notna().all().all()
    assert str(ours["orders"].dtype) == "float64" and str(ours["spend"].dtype) == "float64"  # ints with nulls, as Feast


def test_pinned_frame_equals_merge_asof_on_the_pinned_snapshot(settings: Settings, snapshots: list[int]) -> None:
    ids, ts = entity_rows()
    pinned = snapshots[1]  # the February load: the March rows must not be seen, even after 2025-03-01
    frame = build_training_frame(
        settings, [VIEW], {"customer_id": ids}, event_timestamps=ts, label="churned", as_of_snapshot={TABLE: pinned}
    )
    assert frame.snapshots == {TABLE: pinned}
    assert list(frame.df["customer_id"]) == ids  # the entity rows' order
    table = gold.resolve_table(settings, TABLE, snapshot_id=pinned).read(settings).to_pandas()
    assert set(table["event_timestamp"]) == set(LOADS[:2])
    expected = merge_asof_expected(table, ids, ts, [*FEATURES, "churned"])
    pd.testing.assert_frame_equal(frame.df[[*FEATURES, "churned"]], expected, check_dtype=True)

    current = build_training_frame(settings, [VIEW], {"customer_id": ids}, event_timestamps=ts, label="churned")
    assert current.snapshots[TABLE] >= 0 and current.snapshots[TABLE] != pinned
    assert not current.df[FEATURES].equals(frame.df[FEATURES])  # the rows after 2025-03-01 see the March load


def test_ray_dataset_rows_equal_the_frame(settings: Settings, snapshots: list[int]) -> None:
    """Data-parallel training's ``to_ray_dataset`` gives the same rows and dtypes as ``to_df``."""
    ids, ts = entity_rows()
    job, meta = start_retrieval(
        settings, [VIEW], {"customer_id": ids}, event_timestamps=ts, label="churned", as_of_snapshot={TABLE: snapshots[0]}
    )
    assert meta.snapshots == {TABLE: snapshots[0]}
    local = job.to_df().sort_values(ROW).reset_index(drop=True)
    distributed = job.to_ray_dataset().to_pandas().sort_values(ROW).reset_index(drop=True)
    cols = ["customer_id", *FEATURES, "churned"]
    pd.testing.assert_frame_equal(distributed[cols], local[cols], check_dtype=True)
    assert local["churned"].isna().any() and str(local["churned"].dtype) == "float64"


def test_pins_are_checked_before_a_job_starts(settings: Settings, snapshots: list[int]) -> None:
    service = TrainingService(settings)
    with pytest.raises(InvalidRequest, match=r"do(es)? not read"):
        service.start(TrainRequest.model_validate(body(as_of_snapshot={"customer_aggregates": snapshots[0]})))
    with pytest.raises(NotFound, match="no snapshot"):
        service.start(TrainRequest.model_validate(body(as_of_snapshot={TABLE: 12345})))
    for bad in ({"bad-name": 1}, {TABLE: True}, {TABLE: 2**63}, {TABLE: "1"}, [1]):
        with pytest.raises(ValidationError, match="as_of_snapshot"):
            TrainRequest.model_validate(body(as_of_snapshot=bad))


def body(**overrides: Any) -> dict[str, Any]:
    """A small training request over the view: every customer at two times, one seeded trial."""
    ids = list(range(1, N + 1))
    data: dict[str, Any] = {
        "experiment_name": f"it_training_gold_{SUFFIX}",
        "model_name": MODEL,
        "framework": "sklearn",
        "model_type": "classification",
        "data_source": {
            "feature_views": [VIEW],
            "entities": {"customer_id": ids + ids},
            "event_timestamps": ["2025-02-15T00:00:00Z"] * N + ["2025-06-01T00:00:00Z"] * N,
            "target_column": "churned",
        },
        "hyperparameters": {"params": {"n_estimators": 8, "max_depth": 4, "random_state": 3}},
        "split": {"seed": 11},
    }
    data.update(overrides)
    return data


def train(settings: Settings, request: dict[str, Any]) -> TrainResponse:
    result = TrainingService(settings).train(TrainRequest.model_validate(request))
    assert isinstance(result, TrainResponse)
    return result


@pytest.fixture(scope="module")
def runs(settings: Settings, snapshots: list[int]) -> dict[str, Any]:
    """A run on the current snapshot, an append, a re-run pinned to the old snapshot, and an unpinned run."""
    first = train(settings, body())
    late = gold.write_table(settings, TABLE, load(LATE_LOAD, 99), summary={"asgard.load": "2025-04"})
    pinned = train(settings, body(as_of_snapshot={TABLE: first.feature_snapshots[TABLE]}))
    fresh = train(settings, body())
    return {"first": first, "pinned": pinned, "fresh": fresh, "late": late}


def predictions(run: TrainResponse, X: pd.DataFrame) -> np.ndarray:
    return np.asarray(mlflow.pyfunc.load_model(run.model_uri).predict(X))


def test_a_pinned_rerun_after_an_append_reproduces_the_run(settings: Settings, snapshots: list[int], runs: dict[str, Any]) -> None:
    first, pinned, fresh = runs["first"], runs["pinned"], runs["fresh"]
    assert first.feature_snapshots == {TABLE: snapshots[-1]}  # the current snapshot when the job started
    assert pinned.feature_snapshots == {TABLE: snapshots[-1]}
    assert fresh.feature_snapshots == {TABLE: runs["late"]}
    assert pinned.metrics.metrics == first.metrics.metrics
    assert pinned.best_params == first.best_params and pinned.training_rows == first.training_rows
    mlflow.set_tracking_uri(settings.tracking_uri)
    rng = np.random.default_rng(5)
    X = pd.DataFrame({"orders": rng.integers(0, 12, 200), "spend": rng.uniform(5, 80, 200), "tickets": rng.integers(0, 5, 200)})
    np.testing.assert_array_equal(predictions(pinned, X), predictions(first, X))

    # the append did change what an unpinned run reads
    ents = body()["data_source"]
    old = build_training_frame(
        settings,
        [VIEW],
        ents["entities"],
        event_timestamps=ents["event_timestamps"],
        label="churned",
        as_of_snapshot={TABLE: snapshots[-1]},
    )
    new = build_training_frame(settings, [VIEW], ents["entities"], event_timestamps=ents["event_timestamps"], label="churned")
    assert new.snapshots == {TABLE: runs["late"]} and not new.df[FEATURES].equals(old.df[FEATURES])


def test_parent_run_records_the_snapshots(settings: Settings, snapshots: list[int], runs: dict[str, Any]) -> None:
    client = mlflow.MlflowClient(tracking_uri=settings.tracking_uri)
    for key, snap in (("first", snapshots[-1]), ("pinned", snapshots[-1]), ("fresh", runs["late"])):
        tags = client.get_run(runs[key].run_id).data.tags
        assert tags[f"asgard.gold.{TABLE}.snapshot_id"] == str(snap)
        assert json.loads(tags[lineage.TAG_GOLD_SNAPSHOTS]) == {TABLE: snap}
        assert lineage.snapshots_from_tags(tags) == {TABLE: snap}
    first, pinned = (client.get_run(runs[k].run_id).data.tags for k in ("first", "pinned"))
    assert first[lineage.TAG_ENTITY_HASH] == pinned[lineage.TAG_ENTITY_HASH]


def test_registered_version_tags_its_snapshot(settings: Settings, snapshots: list[int], runs: dict[str, Any]) -> None:
    registry = ModelRegistry(settings)
    answer = registry.register(RegisterModelRequest(model_name=MODEL, run_id=runs["first"].run_id))
    tag = gold.snapshot_tag(MODEL, answer.version)
    refs = gold.gold_catalog(settings).load_table((settings.gold_schema, TABLE)).metadata.refs
    assert refs[tag].snapshot_id == snapshots[-1] and refs[tag].snapshot_ref_type == "tag"
    version = next(v for v in registry.get_model(MODEL).versions if v.version == answer.version)
    assert version.tags[lineage.TAG_GOLD_SNAPSHOT_REF] == tag
    assert version.tags[f"asgard.gold.{TABLE}.snapshot_id"] == str(snapshots[-1])
    assert lineage.TAG_GOLD_SNAPSHOT_TAG_ERROR not in version.tags


def test_a_tagging_failure_leaves_a_usable_version_and_a_retry_repairs_it(
    settings: Settings, runs: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = ModelRegistry(settings)
    request = RegisterModelRequest(model_name=MODEL, run_id=runs["fresh"].run_id)

    def unreachable(*args: Any, **kwargs: Any) -> bool:
        raise ConnectionError("catalog unreachable")

    with monkeypatch.context() as patch:
        patch.setattr(gold, "tag_snapshot", unreachable)
        answer = registry.register(request)
    assert answer.status == "registered"
    tag = gold.snapshot_tag(MODEL, answer.version)
    version = next(v for v in registry.get_model(MODEL).versions if v.version == answer.version)
    assert "catalog unreachable" in version.tags[lineage.TAG_GOLD_SNAPSHOT_TAG_ERROR]
    assert lineage.TAG_GOLD_SNAPSHOT_REF not in version.tags
    assert tag not in gold.gold_catalog(settings).load_table((settings.gold_schema, TABLE)).metadata.refs

    again = registry.register(request)  # registering the run again retries the tag
    assert again.status == "already_registered" and again.version == answer.version
    version = next(v for v in registry.get_model(MODEL).versions if v.version == answer.version)
    assert version.tags[lineage.TAG_GOLD_SNAPSHOT_REF] == tag and lineage.TAG_GOLD_SNAPSHOT_TAG_ERROR not in version.tags
    refs = gold.gold_catalog(settings).load_table((settings.gold_schema, TABLE)).metadata.refs
    assert refs[tag].snapshot_id == runs["late"]
