"""Pure logic of batch scoring: request validation, output paths, file naming, native predict."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pydantic import ValidationError

from asgard_ray.config import Mode, Settings
from asgard_ray.errors import InvalidRequest
from asgard_ray.scoring.pipeline import Scorer, ScorerSpec, output_columns
from asgard_ray.scoring.predict import predict_native, proba_column
from asgard_ray.scoring.schemas import BatchScoreRequest
from asgard_ray.scoring.sink import JobFilenameProvider, OutputLayout, check_output_path

SEED = {
    "model_name": "churn_predictor",
    "model_version": "1",
    "feature_views": ["customer_features"],
    "entities_df": {"customer_id": [1, 2, 3]},
    "output_path": "s3://my-bucket/predictions/batch_2025_10_17.parquet",
}


def test_seed_body_parses_and_async_alias() -> None:
    req = BatchScoreRequest.model_validate({**SEED, "async": True, "model_version": 3})
    assert req.run_async and req.model_version == "3" and not req.overwrite


@pytest.mark.parametrize(
    "change",
    [
        {"entities_df": None},
        {"entities_source": {"path": "s3://asgard/x"}},
        {"job_id": "../etc"},
        {"model_version": True},
        {"entities_df": None, "entities_source": {"path": "s3://a/b", "table_name": "t"}},
        {"unknown_field": 1},
    ],
)
def test_bad_bodies_are_rejected(change: dict) -> None:
    with pytest.raises(ValidationError):
        BatchScoreRequest.model_validate({**SEED, **change})


def test_output_path_rules() -> None:
    s = Settings(asgard_output_buckets=["my-bucket"])
    assert check_output_path(s, "s3://my-bucket/predictions/x.parquet/") == "s3://my-bucket/predictions/x.parquet"
    for bad, needle in [("s3://other/x", "not an allowed"), ("s3://my-bucket", "whole bucket"), ("gs://b/x", "scheme"),
                        ("relative/dir", "bare paths"), ("/tmp/out", "bare paths"), ("file:///tmp/out", "scheme 'file'")]:
        with pytest.raises(InvalidRequest, match=needle):
            check_output_path(s, bad)  # host paths are refused in embedded mode too
    prod = Settings(asgard_mode=Mode.PRODUCTION, aws_secret_access_key="real", asgard_output_buckets=["my-bucket"])
    with pytest.raises(InvalidRequest, match="bare paths"):
        check_output_path(prod, "/tmp/out")


def test_layout_and_file_names() -> None:
    layout = OutputLayout.for_job("s3://b/p", "7", datetime(2025, 10, 17, 23, 59, tzinfo=UTC))
    assert layout.data_dir == "s3://b/p/model_version=7/score_date=2025-10-17"
    assert layout.manifest_uri == "s3://b/p/_manifest.json"
    names = JobFilenameProvider("batch-abc")
    first = names.get_filename_for_task("uuid1", 3)
    assert first == names.get_filename_for_task("uuid1", 3) == "batch-abc_uuid1_000003.parquet"  # a retry rewrites the same file


def _spec(**over: object) -> ScorerSpec:
    base = dict(
        job_id="batch-1", model_name="m", model_version="2", run_id="r", model_type="classification", classes=[0, 1],
        join_keys=["cid"], feature_columns=["x1", "x2"], int_features=("x1",), timestamp_column="event_timestamp",
        scored_at=datetime(2025, 1, 1, tzinfo=UTC), as_of=datetime(2025, 1, 1, tzinfo=UTC), threads=1,
    )
    base.update(over)
    return ScorerSpec(**base)  # type: ignore[arg-type]


def test_scorer_output_columns_and_context_on_failure() -> None:
    from sklearn.linear_model import LogisticRegression

    X = pd.DataFrame({"x1": [0, 1, 2, 3], "x2": [0.0, 1.0, 0.0, 1.0]})  # noqa: N806
    model = LogisticRegression().fit(X, [0, 1, 0, 1])
    spec = _spec()
    batch = pd.DataFrame({"cid": [1, 2, 3, 4], **X})
    table = Scorer([model], spec, [])(batch)
    assert table.schema.field("x1").type == pa.int64() and table.schema.field("scored_at").type == pa.timestamp("us", tz="UTC")
    out = table.to_pandas()
    assert list(out.columns) == output_columns(spec, [0, 1])
    assert out["prediction"].tolist() == model.predict(X).tolist()
    np.testing.assert_allclose(out["prediction_proba"], model.predict_proba(X)[:, 1])
    assert (out["job_id"] == "batch-1").all() and out["x1"].tolist() == [0, 1, 2, 3]
    assert (out["event_timestamp"] == pd.Timestamp("2025-01-01", tz="UTC")).all()
    with pytest.raises(RuntimeError, match=r"job batch-1: scoring 2 rows \(cid \[1, 2\]"):
        Scorer([model], spec, [])(pd.DataFrame({"cid": [1, 2], "x1": ["a", "b"], "x2": [1.0, 2.0]}))


def test_lightgbm_booster_and_estimator_agree() -> None:
    import lightgbm as lgb

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(300, 3)), columns=["a", "b", "c"])  # noqa: N806
    y = (X["a"] > 0).astype(int)
    est = lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(X, y)
    via_est = predict_native(est, X, model_type="classification")
    via_booster = predict_native(est.booster_, X, model_type="classification", classes=[0, 1], num_threads=1)
    assert via_est.prediction.tolist() == via_booster.prediction.tolist() == est.predict(X).tolist()
    np.testing.assert_allclose(via_est.proba, via_booster.proba)
    reg = predict_native(lgb.LGBMRegressor(n_estimators=5, verbose=-1).fit(X, X["b"]), X, model_type="regression")
    assert reg.proba is None and reg.prediction.shape == (300,)
    assert proba_column("yes no") == "proba_yes_no"


def test_argmax_shortcut_matches_predict_for_forests_and_string_labels() -> None:
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(1)
    X = pd.DataFrame(rng.normal(size=(200, 2)), columns=["a", "b"])  # noqa: N806
    y = np.where(X["a"] > 0, "yes", np.where(X["b"] > 0, "maybe", "no"))
    rf = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    got = predict_native(rf, X, model_type="classification")
    assert got.prediction.tolist() == rf.predict(X).tolist() and got.classes == ["maybe", "no", "yes"]
