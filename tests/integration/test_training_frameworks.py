"""xgboost and LightGBM through the same pipeline; the ``jobs/train.py`` entrypoint; the registry round trip."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import mlflow
import numpy as np
import pytest

from asgard_ray import lineage
from asgard_ray.config import Settings
from asgard_ray.features import TrainingFrame
from asgard_ray.registry import ModelRegistry, RegisterModelRequest, resolve_model_version
from tests.integration.test_training import frame, request_body, train_frame  # noqa: F401 - fixture

pytestmark = pytest.mark.integration


def load_job(name: str):  # noqa: ANN201
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[2] / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_xgboost_classification_with_time_split_trains_and_registers(settings: Settings, customer_features: str, frame: TrainingFrame) -> None:  # noqa: F811
    body = request_body(customer_features, framework="xgboost", model_name="it_xgb_churn",
                        split={"strategy": "time", "validation_fraction": 0.5},
                        hyperparameters={"params": {"n_estimators": 20, "max_depth": 3},
                                         "search_space": {"learning_rate": {"type": "loguniform", "low": 0.05, "high": 0.5}},
                                         "num_trials": 2, "metric": "log_loss"})
    result = train_frame(settings, body, frame)
    assert result.num_trials == 2 and result.metric == "log_loss"
    assert result.validation_rows == 150  # the later snapshot validates
    assert 0.05 <= result.best_params["learning_rate"] <= 0.5
    assert {"roc_auc", "log_loss", "train_log_loss"} <= set(result.metrics.metrics)
    native = mlflow.xgboost.load_model(result.model_uri)
    assert type(native).__name__ == "XGBClassifier"
    proba = native.predict_proba(frame.X.astype("float64").head(4))
    assert proba.shape == (4, 2) and np.allclose(proba.sum(axis=1), 1)

    registered = ModelRegistry(settings).register(RegisterModelRequest(model_name="it_xgb_churn", run_id=result.run_id))
    resolved = resolve_model_version(settings, "it_xgb_churn", registered.version)
    assert resolved.run_id == result.run_id and resolved.tags[lineage.TAG_FRAMEWORK] == "xgboost"
    assert mlflow.pyfunc.load_model(resolved.model_uri).predict(frame.X.head(3)).shape == (3,)


def test_lightgbm_regression_via_job_entrypoint(settings: Settings, customer_features: str, capsys: pytest.CaptureFixture[str]) -> None:
    body = request_body(customer_features, n_ids=80, framework="lightgbm", model_type="regression", model_name="it_lgb_spend",
                        hyperparameters={"params": {"n_estimators": 40, "num_leaves": 7, "min_child_samples": 5}})
    body["data_source"]["target_column"] = "total_spend"
    result = load_job("train").main(["--request", json.dumps(body)])
    out = capsys.readouterr().out
    printed = json.loads(out.strip().splitlines()[-1])  # the job prints its result as its last line
    assert printed == result
    assert printed["status"] == "completed" and printed["metric"] == "rmse"
    metrics = result["metrics"]["metrics"]
    assert {"rmse", "mae", "r2", "train_rmse", "train_mae", "train_r2"} <= set(metrics)
    assert metrics["r2"] > 0.5  # total_spend = orders x order value: learnable from the features
    client = mlflow.MlflowClient(tracking_uri=settings.tracking_uri)
    plots = {a.path for a in client.list_artifacts(result["run_id"], "plots")}
    assert {"plots/residuals.png", "plots/feature_importance.png"} <= plots
    run = client.get_run(result["run_id"])
    assert run.data.tags[lineage.TAG_LABEL] == "total_spend" and lineage.TAG_CLASSES not in run.data.tags
    assert type(mlflow.lightgbm.load_model(result["model_uri"])).__name__ == "LGBMRegressor"
    registered = ModelRegistry(settings).register(RegisterModelRequest(model_name="it_lgb_spend", run_id=result["run_id"]))
    assert registered.status == "registered"
