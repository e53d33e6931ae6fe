"""Batch scoring against the real S3 server, MLflow server, Feast repo and local Ray."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from asgard_ray import lineage
from asgard_ray.config import Settings
from asgard_ray.errors import Conflict, InvalidRequest, NotFound, PayloadTooLarge
from asgard_ray.jobs import JobStore
from asgard_ray.local.demo_data import customer_aggregates
from asgard_ray.scoring import BatchScoreRequest, BatchScoringService, read_manifest, read_scored_rows
from asgard_ray.storage import list_files, resolve

pytestmark = pytest.mark.integration

FEATURES = ["total_orders", "avg_order_value", "days_since_last_order"]
MODEL = "scoring_churn"


def register_churn_model(
    settings: Settings,
    name: str = MODEL,
    feature_columns: list[str] | None = None,
    *,
    framework: str = "lightgbm",
    alias: str | None = "champion",
) -> str:
    """Train a small classifier on the demo data, log it the way training does, register a version."""
    import mlflow
    from mlflow.models import infer_signature
    from mlflow.tracking import MlflowClient

    cols = feature_columns or FEATURES
    gold = customer_aggregates()
    train = gold[gold["event_timestamp"] == gold["event_timestamp"].max()]
    X, y = train[cols], train["churned"]  # noqa: N806
    if framework == "lightgbm":
        import lightgbm as lgb

        est = lgb.LGBMClassifier(n_estimators=20, num_leaves=15, n_jobs=1, verbose=-1).fit(X, y)
    else:
        from sklearn.ensemble import RandomForestClassifier

        est = RandomForestClassifier(n_estimators=10, max_depth=5, random_state=0, n_jobs=1).fit(X, y)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_experiment("scoring-tests")
    with mlflow.start_run() as run:
        flavor = mlflow.lightgbm if framework == "lightgbm" else mlflow.sklearn
        info = flavor.log_model(est, name=lineage.MODEL_ARTIFACT, signature=infer_signature(X, est.predict(X)))
        mlflow.set_tags({
            lineage.TAG_FEATURE_COLUMNS: json.dumps(cols),
            lineage.TAG_FEATURE_VIEWS: json.dumps(["customer_features"]),
            lineage.TAG_JOIN_KEYS: json.dumps(["customer_id"]),
            lineage.TAG_LABEL: "churned",
            lineage.TAG_FRAMEWORK: framework,
            lineage.TAG_MODEL_TYPE: "classification",
            lineage.TAG_CLASSES: json.dumps([int(c) for c in est.classes_]),
            lineage.TAG_FEAST_REGISTRY_VERSION: "test",
        })
    mv = mlflow.register_model(info.model_uri, name)
    if alias:
        MlflowClient().set_registered_model_alias(name, alias, mv.version)
    return str(mv.version)


@pytest.fixture(scope="module")
def churn_model(settings: Settings, customer_features: str) -> str:
    """A registered LightGBM churn model (version 1, alias champion)."""
    return register_churn_model(settings)


@pytest.fixture(scope="module")
def scoring(settings: Settings, ray_session: None) -> BatchScoringService:
    return BatchScoringService(settings)


def _read_output(settings: Settings, output_path: str) -> pd.DataFrame:
    """Read exactly the files the manifest lists (readers trust the manifest, not a listing)."""
    return read_scored_rows(settings, output_path)


def _seed_body(**over: Any) -> dict[str, Any]:
    body = {
        "model_name": MODEL,
        "model_version": "1",
        "feature_views": ["customer_features"],
        "entities_df": {"customer_id": list(range(1, 11))},
        "output_path": "s3://my-bucket/predictions/batch_2025_10_17.parquet",
    }
    body.update(over)
    return body


def test_seed_request_writes_partitioned_parquet_and_manifest(settings: Settings, scoring: BatchScoringService, churn_model: str) -> None:
    resp = scoring.submit(BatchScoreRequest.model_validate(_seed_body(overwrite=True)))
    assert resp.status == "completed", resp.error
    assert resp.model_version == churn_model and resp.total_rows == 10
    manifest = read_manifest(settings, resp.output_path)
    assert manifest.job_id == resp.job_id and manifest.total_rows == 10
    assert manifest.feature_columns == FEATURES and manifest.join_keys == ["customer_id"]
    assert manifest.feature_views == ["customer_features"] and manifest.feast_registry_version
    assert manifest.probability_columns == ["prediction_proba", "proba_0", "proba_1"]
    assert {"model_load_s", "features_s", "score_write_s", "total_s"} <= set(manifest.timings)
    # partitions exist and the files' row counts match the manifest
    files = list_files(settings, resp.output_path)
    data = [f for f in files if f.endswith(".parquet")]
    assert data and all(f"/model_version={churn_model}/score_date=" in f for f in data)
    assert sorted(f"s3://{f}" for f in data) == sorted(f.path for f in manifest.files)
    assert sum(f.rows for f in manifest.files) == 10
    out = _read_output(settings, resp.output_path)
    assert sorted(out["customer_id"]) == list(range(1, 11))
    assert len(read_scored_rows(settings, resp.job_id, columns=["customer_id", "prediction"], limit=3)) == 3
    expected = {"customer_id", "event_timestamp", *FEATURES, "prediction", "prediction_proba", "proba_0", "proba_1",
                "model_name", "run_id", "job_id", "scored_at", "model_version", "score_date"}
    assert expected <= set(out.columns)
    assert set(out["job_id"]) == {resp.job_id} and set(out["model_name"]) == {MODEL}
    assert np.allclose(out["proba_0"] + out["proba_1"], 1.0)
    record = JobStore(settings).get("batch_scoring", resp.job_id)
    assert record.status == "completed" and record.ray_task_name == f"batch_scoring:{resp.job_id}"
    status = scoring.get(resp.job_id)
    assert status.rows_done == 10 and status.rows_total == 10 and status.manifest_path.endswith("_manifest.json")
    assert any(j.job_id == resp.job_id for j in scoring.list().jobs)


def test_ray_predictions_equal_plain_pandas_predict(settings: Settings, scoring: BatchScoringService, churn_model: str) -> None:
    import mlflow

    from asgard_ray.features import build_training_frame

    ids = list(range(1, 301))
    resp = scoring.submit(BatchScoreRequest.model_validate(
        _seed_body(entities_df={"customer_id": ids}, output_path="s3://asgard/test-scoring/equal")
    ))
    assert resp.status == "completed", resp.error
    out = _read_output(settings, resp.output_path).sort_values("customer_id").reset_index(drop=True)
    frame = build_training_frame(settings, ["customer_features"], {"customer_id": ids})
    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL}/{churn_model}")
    expected = np.asarray(pyfunc.predict(frame.X))
    native = mlflow.lightgbm.load_model(f"models:/{MODEL}/{churn_model}")
    assert out["prediction"].tolist() == expected.tolist()
    np.testing.assert_array_equal(out["prediction_proba"].to_numpy(), native.predict_proba(frame.X)[:, 1])
    pd.testing.assert_frame_equal(out[FEATURES].astype("float64"), frame.X.astype("float64"))


def test_alias_resolves_to_a_concrete_version(settings: Settings, scoring: BatchScoringService, churn_model: str) -> None:
    resp = scoring.submit(BatchScoreRequest.model_validate(
        _seed_body(model_version="champion", output_path="s3://asgard/test-scoring/alias")
    ))
    assert resp.status == "completed" and resp.model_version == churn_model and resp.alias == "champion"
    manifest = read_manifest(settings, resp.job_id)
    assert manifest.model_version == churn_model and manifest.alias == "champion" and manifest.run_id


def _write_entities(settings: Settings, uri: str, df: pd.DataFrame) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs, path = resolve(settings, uri)
    half = len(df) // 2
    for i, part in enumerate((df.iloc[:half], df.iloc[half:])):
        pq.write_table(pa.Table.from_pandas(part.reset_index(drop=True), preserve_index=False), f"{path}/part-{i}.parquet", filesystem=fs)


def test_entities_source_asof_join_matches_feast(settings: Settings, scoring: BatchScoringService, churn_model: str) -> None:
    from asgard_ray.features import build_training_frame

    rng = np.random.default_rng(7)
    n = 2000
    stamps = pd.to_datetime(["2025-06-01", "2025-07-15", "2025-08-01", "2025-09-30T23:59:00", "2025-12-01"], utc=True, format="ISO8601")
    ents = pd.DataFrame({
        "customer_id": rng.integers(1, 10_050, n).astype("int64"),  # a few unknown ids -> null features
        "event_timestamp": stamps[rng.integers(0, len(stamps), n)].astype("datetime64[us, UTC]"),
    })
    _write_entities(settings, "s3://asgard/test-scoring/entities/asof", ents)
    resp = scoring.submit(BatchScoreRequest.model_validate({
        "model_name": MODEL, "model_version": churn_model,
        "entities_source": {"path": "s3://asgard/test-scoring/entities/asof"},
        "output_path": "s3://asgard/test-scoring/asof-out",
    }))
    assert resp.status == "completed", resp.error
    out = _read_output(settings, resp.output_path)
    assert len(out) == n
    frame = build_training_frame(settings, ["customer_features"], ents)
    ref = frame.df.assign(customer_id=frame.df["customer_id"].astype("int64"))
    key = ["customer_id", "event_timestamp"]
    got = out.sort_values(key, kind="stable").reset_index(drop=True)
    ref = ref.sort_values(key, kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(got[FEATURES].astype("float64"), ref[FEATURES].astype("float64"), check_names=False)
    assert got[FEATURES].isna().any(axis=1).sum() > 0  # unknown ids and pre-history rows are null, not dropped


def test_features_included_source_scores_rows_as_they_are(settings: Settings, scoring: BatchScoringService, churn_model: str) -> None:
    gold = customer_aggregates().head(1500)
    _write_entities(settings, "s3://asgard/test-scoring/entities/included", gold[["customer_id", "event_timestamp", *FEATURES]])
    resp = scoring.submit(BatchScoreRequest.model_validate({
        "model_name": MODEL, "model_version": "champion",
        "entities_source": {"path": "s3://asgard/test-scoring/entities/included", "features_included": True},
        "output_path": "s3://asgard/test-scoring/included-out",
    }))
    assert resp.status == "completed", resp.error
    out = _read_output(settings, resp.output_path).sort_values(["customer_id", "event_timestamp"]).reset_index(drop=True)
    import mlflow

    native = mlflow.lightgbm.load_model(f"models:/{MODEL}/{churn_model}")
    gold = gold.sort_values(["customer_id", "event_timestamp"]).reset_index(drop=True)
    assert out["prediction"].tolist() == native.predict(gold[FEATURES]).tolist()


def test_cluster_path_scores_each_input_file_in_one_fused_task(settings: Settings, ray_session: None, churn_model: str) -> None:
    """With a file per CPU, read, score and write fuse into one task per file: one output file each, same predictions."""
    import mlflow
    import pyarrow as pa
    import pyarrow.parquet as pq

    gold = customer_aggregates().head(6000)[["customer_id", "event_timestamp", *FEATURES]]
    fs, path = resolve(settings, "s3://asgard/test-scoring/entities/fused")
    parts = np.array_split(np.arange(len(gold)), 4)
    for i, rows in enumerate(parts):
        part = gold.iloc[rows].reset_index(drop=True)
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), f"{path}/part-{i}.parquet", filesystem=fs)
    cluster_only = BatchScoringService(settings.model_copy(update={"asgard_fast_path_rows": 0}))
    resp = cluster_only.submit(BatchScoreRequest.model_validate({
        "model_name": MODEL, "model_version": churn_model,
        "entities_source": {"path": "s3://asgard/test-scoring/entities/fused", "features_included": True},
        "output_path": "s3://asgard/test-scoring/fused-out",
    }))
    assert resp.status == "completed", resp.error
    manifest = read_manifest(settings, resp.job_id)
    assert manifest.execution_path == "cluster"
    assert sorted(f.rows for f in manifest.files) == sorted(len(r) for r in parts)  # one file per input file
    out = _read_output(settings, resp.output_path).sort_values(["customer_id", "event_timestamp"]).reset_index(drop=True)
    gold = gold.sort_values(["customer_id", "event_timestamp"]).reset_index(drop=True)
    native = mlflow.lightgbm.load_model(f"models:/{MODEL}/{churn_model}")
    assert out["prediction"].tolist() == native.predict(gold[FEATURES]).tolist()
    assert set(out["model_name"]) == {MODEL} and set(out["job_id"]) == {resp.job_id}


def test_validation_errors(settings: Settings, scoring: BatchScoringService, churn_model: str) -> None:
    def submit(**over: Any) -> None:
        scoring.submit(BatchScoreRequest.model_validate(_seed_body(**{"output_path": "s3://asgard/test-scoring/invalid", **over})))

    with pytest.raises(NotFound, match="no_such_model"):
        submit(model_name="no_such_model")
    with pytest.raises(NotFound, match="version 99"):
        submit(model_version="99")
    with pytest.raises(NotFound, match="alias"):
        submit(model_version="no_alias")
    with pytest.raises(InvalidRequest, match="not an allowed location"):
        submit(output_path="s3://someone-elses-bucket/x")
    with pytest.raises(InvalidRequest, match="scheme"):
        submit(output_path="gs://bucket/x")
    with pytest.raises(InvalidRequest, match="customer_id"):
        submit(entities_df={"customer_id": [1, "two", 3]})
    with pytest.raises(InvalidRequest, match="customer_id"):
        submit(entities_df={"customer_id": [1, None]})
    with pytest.raises(PayloadTooLarge, match="entities_source"):
        submit(entities_df={"customer_id": list(range(100_001))})
    with pytest.raises(NotFound, match="nope_view"):
        submit(feature_views=["nope_view"])
    assert not list_files(settings, "s3://asgard/test-scoring/invalid")


def test_missing_training_features_are_named(settings: Settings, scoring: BatchScoringService, customer_features: str) -> None:
    version = register_churn_model(settings, "wide_churn", [*FEATURES, "support_tickets", "tenure_days"], alias=None)
    with pytest.raises(InvalidRequest, match="support_tickets, tenure_days") as info:
        scoring.submit(BatchScoreRequest.model_validate(
            _seed_body(model_name="wide_churn", model_version=version, output_path="s3://asgard/test-scoring/wide")
        ))
    assert info.value.detail["missing_features"] == ["support_tickets", "tenure_days"]


def test_existing_output_is_409_unless_overwrite(settings: Settings, scoring: BatchScoringService, churn_model: str) -> None:
    out = "s3://asgard/test-scoring/conflict"
    first = scoring.submit(BatchScoreRequest.model_validate(_seed_body(output_path=out)))
    assert first.status == "completed"
    with pytest.raises(Conflict, match="overwrite"):
        scoring.submit(BatchScoreRequest.model_validate(_seed_body(output_path=out)))
    second = scoring.submit(BatchScoreRequest.model_validate(_seed_body(output_path=out, overwrite=True)))
    assert second.status == "completed" and second.job_id != first.job_id
    files = list_files(settings, out)
    assert not any(first.job_id in f for f in files)  # the replaced job's files are gone
    assert read_manifest(settings, out).job_id == second.job_id
    assert len(_read_output(settings, out)) == 10
