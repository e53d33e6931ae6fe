"""Training on a real local Ray, MLflow server, Feast repo and S3 server: trials, nesting, failures, tiny data."""

from __future__ import annotations

import json
from typing import Any

import mlflow
import pandas as pd
import pytest

from asgard_ray import lineage
from asgard_ray.config import Settings
from asgard_ray.errors import InvalidRequest, NotFound
from asgard_ray.features import TrainingFrame, build_training_frame
from asgard_ray.jobs import JobStore, new_job_id
from asgard_ray.training import TrainingService, TrainRequest, TrainResponse
from asgard_ray.training.pipeline import train_on_frame

pytestmark = pytest.mark.integration

SNAPSHOTS = ["2025-08-01T00:00:00+00:00", "2025-09-01T00:00:00+00:00"]


def request_body(customer_features: str, n_ids: int = 150, **overrides: Any) -> dict[str, Any]:
    """A training request over ``n_ids`` customers at two monthly snapshots (2 x n_ids rows)."""
    ids = list(range(1, n_ids + 1))
    body: dict[str, Any] = {
        "experiment_name": "it_training",
        "model_name": "it_churn",
        "framework": "sklearn",
        "model_type": "classification",
        "data_source": {
            "feature_views": [customer_features],
            "entities": {"customer_id": ids + ids},
            "event_timestamps": [SNAPSHOTS[0]] * n_ids + [SNAPSHOTS[1]] * n_ids,
            "target_column": "churned",
        },
        "hyperparameters": {"params": {"n_estimators": 10, "random_state": 7}},
        "tags": {"team": "data-science"},
    }
    body.update(overrides)
    return body


def train(settings: Settings, body: dict[str, Any]) -> TrainResponse:
    """The full path: validation, a job record, the Ray task ``training:<job_id>``, Feast retrieval."""
    result = TrainingService(settings).train(TrainRequest.model_validate(body))
    assert isinstance(result, TrainResponse)
    return result


@pytest.fixture(scope="module")
def frame(settings: Settings, customer_features: str) -> TrainingFrame:
    """The 300-row frame of ``request_body`` (Feast retrieval is the slow part; done once here)."""
    ds = request_body(customer_features)["data_source"]
    return build_training_frame(settings, ds["feature_views"], ds["entities"], event_timestamps=ds["event_timestamps"],
                                label="churned")


def train_frame(settings: Settings, body: dict[str, Any], frame: TrainingFrame) -> TrainResponse:
    """Train on an already retrieved frame (trials still run on Ray Tune and log to MLflow)."""
    job_id = new_job_id("train")
    JobStore(settings).create("training", job_id)
    return TrainResponse.model_validate(train_on_frame(settings, TrainRequest.model_validate(body), frame, job_id))


def child_runs(settings: Settings, result: TrainResponse) -> list[Any]:
    client = mlflow.MlflowClient(tracking_uri=settings.tracking_uri)
    return client.search_runs(
        [result.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{result.run_id}'", max_results=100
    )


def test_trials_nest_under_parent_run_with_lineage(settings: Settings, customer_features: str, frame: TrainingFrame) -> None:
    body = request_body(customer_features, hyperparameters={
        "params": {"n_estimators": 10},
        "search_space": {"max_depth": {"type": "randint", "low": 2, "high": 6},
                         "min_samples_leaf": {"type": "choice", "values": [1, 5]}},
        "num_trials": 2, "metric": "roc_auc",
    })
    result = train_frame(settings, body, frame)

    assert result.status == "completed" and result.num_trials == 2 and result.failed_trials == 0
    assert result.model_uri == f"runs:/{result.run_id}/model"
    assert set(result.best_params) >= {"n_estimators", "max_depth", "min_samples_leaf", "random_state"}
    metrics = result.metrics.metrics
    for name in ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"):
        assert name in metrics and f"train_{name}" in metrics
    assert 0.5 < metrics["roc_auc"] <= 1.0  # the demo label is learnable
    assert result.training_rows + result.validation_rows == 300 and result.validation_rows == 60

    client = mlflow.MlflowClient(tracking_uri=settings.tracking_uri)
    children = child_runs(settings, result)
    assert len(children) == result.num_trials == 2
    assert {c.info.status for c in children} == {"FINISHED"}
    for child in children:
        assert "max_depth" in child.data.params and "roc_auc" in child.data.metrics
    parent = client.get_run(result.run_id)
    assert parent.info.status == "FINISHED"
    tags = parent.data.tags
    assert json.loads(tags[lineage.TAG_FEATURE_COLUMNS]) == ["total_orders", "avg_order_value", "days_since_last_order"]
    assert json.loads(tags[lineage.TAG_FEATURE_VIEWS]) == [customer_features]
    assert json.loads(tags[lineage.TAG_JOIN_KEYS]) == ["customer_id"]
    assert json.loads(tags[lineage.TAG_CLASSES]) == [0, 1]
    assert tags[lineage.TAG_LABEL] == "churned" and tags[lineage.TAG_TRAINING_ROWS] == "240"
    assert tags[lineage.TAG_FEAST_REGISTRY_VERSION] and len(tags[lineage.TAG_ENTITY_HASH]) == 64
    assert tags["team"] == "data-science"
    assert parent.data.metrics["roc_auc"] == pytest.approx(metrics["roc_auc"])

    artifacts = {a.path for a in client.list_artifacts(result.run_id)} | {a.path for a in client.list_artifacts(result.run_id, "plots")}
    assert {lineage.PROFILE_ARTIFACT, "plots/feature_importance.png", "plots/confusion_matrix.png", "plots/roc_curve.png"} <= artifacts
    profile = mlflow.artifacts.load_dict(f"{result.artifact_uri}/{lineage.PROFILE_ARTIFACT}")
    assert profile["feature_columns"] == result.feature_columns and profile["prediction"]["n"] == 60

    model = mlflow.pyfunc.load_model(result.model_uri)
    # the feature view's own types: int64 stays int64 in the signature (issue 13)
    frame = pd.DataFrame({"total_orders": [1, 30], "avg_order_value": [40.0, 40.0], "days_since_last_order": [300, 2]})
    assert list(model.predict(frame)) in ([1, 0], [0, 0], [1, 1], [0, 1])
    assert model.metadata.get_input_schema().input_names() == result.feature_columns


def test_crashed_trial_ends_failed_and_best_of_the_rest_wins(settings: Settings, customer_features: str, frame: TrainingFrame) -> None:
    body = request_body(customer_features, hyperparameters={
        "params": {"n_estimators": 5},
        # a value inside the work limits that sklearn itself refuses in fit (out-of-range depths are 422 up front)
        "search_space": {"criterion": {"type": "grid", "values": ["gini", "no-such-criterion"]}},
    })
    result = train_frame(settings, body, frame)

    assert result.num_trials == 2 and result.failed_trials == 1
    assert result.best_params["criterion"] == "gini"
    assert any("1 of 2 trial(s) failed" in w for w in result.warnings)
    statuses = sorted(c.info.status for c in child_runs(settings, result))
    assert statuses == ["FAILED", "FINISHED"]
    failed = next(c for c in child_runs(settings, result) if c.info.status == "FAILED")
    assert "criterion" in failed.data.tags["asgard.error"]


def test_all_trials_failing_is_422_and_parent_failed(settings: Settings, customer_features: str, frame: TrainingFrame) -> None:
    body = request_body(customer_features, experiment_name="it_all_fail", hyperparameters={"params": {"criterion": "no-such-criterion"}})
    with pytest.raises(InvalidRequest, match="all 1 trial"):
        train_frame(settings, body, frame)
    client = mlflow.MlflowClient(tracking_uri=settings.tracking_uri)
    experiment = client.get_experiment_by_name("it_all_fail")
    runs = client.search_runs([experiment.experiment_id], filter_string="attributes.status = 'FAILED'")
    assert any("mlflow.parentRunId" not in r.data.tags for r in runs)  # the parent run
    assert not client.search_runs([experiment.experiment_id], filter_string="attributes.status = 'RUNNING'")


def test_seed_tiny_request_trains_on_all_rows_with_warning(settings: Settings, customer_features: str) -> None:
    body = {
        "experiment_name": "customer_churn", "model_name": "churn_predictor", "framework": "sklearn",
        "model_type": "classification",
        "data_source": {"feature_views": [customer_features], "entities": {"customer_id": [1, 2, 3, 4, 5]},
                        "target_column": "churned"},
        "hyperparameters": {"params": {"n_estimators": 100, "max_depth": 10, "random_state": 42}},
    }
    result = train(settings, body)
    assert result.training_rows == 5 and result.validation_rows == 0
    assert "train_accuracy" in result.metrics.metrics
    assert "accuracy" not in result.metrics.metrics  # no validation set: training metrics only, and named so
    assert any("trained on all of them" in w for w in result.warnings)
    assert mlflow.pyfunc.load_model(result.model_uri) is not None


@pytest.mark.parametrize(
    ("change", "error", "needle"),
    [
        ({"hyperparameters": {"params": {"n_trees": 5}}}, InvalidRequest, "n_trees"),
        ({"hyperparameters": {"params": {}, "search_space": {"depth": {"type": "choice", "values": [1]}}}}, InvalidRequest, "depth"),
        ({"estimator": "SVM"}, InvalidRequest, "SVM"),
        ({"framework": "xgboost", "estimator": "ExtraTrees"}, InvalidRequest, "estimator"),
        ({"hyperparameters": {"params": {}, "metric": "rmse"}}, InvalidRequest, "rmse"),
    ],
)
def test_bad_requests_fail_before_any_work(settings: Settings, change: dict, error: type, needle: str) -> None:
    body = {**request_body("customer_features", n_ids=3), **change}
    with pytest.raises(error, match=needle):
        TrainingService(settings).start(TrainRequest.model_validate(body))


def test_unknown_view_is_404(settings: Settings, customer_features: str) -> None:
    body = request_body(customer_features, n_ids=3)
    body["data_source"] = {**body["data_source"], "feature_views": ["no_such_view"]}
    with pytest.raises(NotFound, match="no_such_view"):
        train(settings, body)


def test_a_failed_artifact_upload_ends_the_run_failed_not_finished(settings: Settings) -> None:
    """``log_winner`` logs the model while the metrics and artifacts go up on a thread: a failure there
    must still end the run FAILED (and raise), never FINISHED with its figures or profile missing."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from asgard_ray.training.tracking import Winner, ensure_experiment, log_winner, mlflow_client, typed_signature

    client = mlflow_client(settings)
    experiment_id = ensure_experiment(settings, "log_winner_failure")
    run_id = client.create_run(experiment_id).info.run_id
    X = pd.DataFrame({"a": np.arange(20, dtype="float64"), "b": np.arange(20, dtype="float64") % 3})
    model = LogisticRegression().fit(X, (X["a"] > 9).astype(int))
    example, signature = typed_signature(model, X.head(5), {"a": "float64", "b": "float64"})
    winner = Winner("sklearn", model, {"train_accuracy": 1.0}, {"C": 1.0}, {"asgard.split": "none"}, example, signature)

    def artifacts(client: Any) -> None:
        raise RuntimeError("the artifact store refused the upload")

    with pytest.raises(RuntimeError, match="refused the upload"):
        log_winner(settings, run_id, experiment_id, winner, artifacts)
    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.metrics == {"train_accuracy": 1.0}  # the side thread's log_batch ran before its failure

    ok_run = client.create_run(experiment_id).info.run_id
    logged_uri, artifact_uri = log_winner(settings, ok_run, experiment_id, winner, lambda c: c.log_dict(ok_run, {"x": 1}, "profile.json"))
    done = client.get_run(ok_run)
    assert done.info.status == "FINISHED" and artifact_uri == done.info.artifact_uri and logged_uri.startswith("models:/")
    assert {a.path for a in client.list_artifacts(ok_run)} >= {"profile.json"}
