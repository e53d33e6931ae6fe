"""Logged models' signatures follow the feature view's dtypes: MLflow's own pyfunc takes int64 columns.

Each framework's model is prepared and logged exactly as training does it (``prepare_data`` ->
fit -> ``typed_signature`` -> ``estimators.log_model``), registered on the real MLflow server, then
loaded back through ``models:/<name>/<version>`` with ``mlflow.pyfunc`` and asked to predict a frame
in the feature view's own types (``total_orders`` and ``days_since_last_order`` are int64).
"""

from __future__ import annotations

import pandas as pd
import pytest

from asgard_ray import lineage
from asgard_ray.config import Settings
from asgard_ray.features.retrieval import TrainingFrame
from asgard_ray.local.demo_data import customer_aggregates
from asgard_ray.training.data import prepare_data
from asgard_ray.training.estimators import log_model
from asgard_ray.training.schemas import SplitSpec
from asgard_ray.training.tracking import typed_signature

pytestmark = pytest.mark.integration

FEATURES = ["total_orders", "avg_order_value", "days_since_last_order"]
DTYPES = {"total_orders": "Int64", "avg_order_value": "Float64", "days_since_last_order": "Int64"}


def _frame() -> TrainingFrame:
    gold = customer_aggregates()
    df = gold[gold["event_timestamp"] == gold["event_timestamp"].max()].head(400).reset_index(drop=True)
    return TrainingFrame(df=df[["customer_id", "event_timestamp", *FEATURES, "churned"]], join_keys=["customer_id"],
                         feature_columns=FEATURES, feature_views=["customer_features"], label="churned",
                         feature_dtypes=DTYPES)


def _fit(framework: str, X: pd.DataFrame, y: object) -> object:
    if framework == "lightgbm":
        import lightgbm as lgb

        return lgb.LGBMClassifier(n_estimators=10, num_leaves=7, n_jobs=1, verbose=-1).fit(X, y)
    if framework == "xgboost":
        import xgboost as xgb

        return xgb.XGBClassifier(n_estimators=10, max_depth=3, n_jobs=1).fit(X, y)
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0, n_jobs=1).fit(X, y)


@pytest.mark.parametrize("framework", ["sklearn", "xgboost", "lightgbm"])
def test_registered_model_predicts_the_feature_views_types_through_pyfunc(settings: Settings, framework: str) -> None:
    import mlflow

    frame = _frame()
    data = prepare_data(frame, "classification", SplitSpec())
    assert data.X_train.dtypes.tolist() == ["float64"] * 3  # training itself runs on float64
    model = _fit(framework, data.X_train, data.y_train)
    example, signature = typed_signature(model, data.X_train.head(5), data.feature_dtypes)
    inputs = {c.name: c.type.name for c in signature.inputs.inputs}
    assert inputs == {"total_orders": "long", "avg_order_value": "double", "days_since_last_order": "long"}
    assert str(example["total_orders"].dtype) == "int64"

    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    mlflow.set_experiment("signature-tests")
    with mlflow.start_run():
        uri = log_model(framework, model, lineage.MODEL_ARTIFACT, signature, example)
    version = mlflow.register_model(uri, f"signature_{framework}").version

    pyfunc = mlflow.pyfunc.load_model(f"models:/signature_{framework}/{version}")
    typed = frame.df[FEATURES].head(20).astype({"total_orders": "int64", "days_since_last_order": "int64"})
    got = pyfunc.predict(typed)  # before the fix: "Can not safely convert int64 to float64"
    assert len(got) == 20
    assert list(pd.Series(got).astype(int)) == list(model.predict(typed.astype("float64")).astype(int))
