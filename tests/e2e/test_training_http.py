"""Steps 2 and 3 of the seed over HTTP (TestClient over the app), for all three frameworks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from asgard_ray.api.app import create_app
from asgard_ray.config import Settings

pytestmark = pytest.mark.e2e


def seed_body(framework: str, model_name: str, params: dict[str, Any]) -> dict[str, Any]:
    """The seed's step 2 body (5 entities), with another framework and model name."""
    return {
        "experiment_name": "customer_churn",
        "model_name": model_name,
        "framework": framework,
        "model_type": "classification",
        "data_source": {
            "feature_views": ["customer_features"],
            "entities": {"customer_id": [1, 2, 3, 4, 5]},
            "target_column": "churned",
        },
        "hyperparameters": {"params": params},
    }


@pytest.fixture(scope="module")
def client(settings: Settings, ray_session: None, customer_features: str) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:  # keyless API: loopback Host only
        yield c


def test_seed_steps_2_and_3_with_sklearn(client: TestClient) -> None:
    r = client.post("/mlops/models", json=seed_body("sklearn", "churn_predictor", {"n_estimators": 100, "max_depth": 10, "random_state": 42}))
    assert r.status_code == 200, r.text
    trained = r.json()
    for key in ("run_id", "experiment_id", "model_name", "model_uri", "metrics", "artifact_uri", "status",
                "num_trials", "best_params", "mlflow_run_url", "warnings"):
        assert key in trained
    assert trained["status"] == "completed" and trained["model_name"] == "churn_predictor"
    assert trained["model_uri"] == f"runs:/{trained['run_id']}/model"
    assert "train_accuracy" in trained["metrics"]["metrics"] and trained["num_trials"] == 1
    assert trained["warnings"]  # 5 rows: trained on all of them, and said so
    assert trained["best_params"]["max_depth"] == 10

    body = {"model_name": "churn_predictor", "run_id": trained["run_id"], "description": "Churn prediction model v1"}
    r = client.post("/mlops/registry", json=body)
    assert r.status_code == 201, r.text
    registered = r.json()
    assert registered["model_name"] == "churn_predictor" and registered["run_id"] == trained["run_id"]
    assert registered["status"] == "registered" and registered["version"]
    again = client.post("/mlops/registry", json=body)
    assert again.status_code == 200 and again.json()["version"] == registered["version"]

    models = {m["name"]: m for m in client.get("/mlops/models").json()["models"]}
    assert models["churn_predictor"]["latest_version"] == registered["version"]
    detail = client.get("/mlops/models/churn_predictor").json()
    assert detail["versions"][0]["run_id"] == trained["run_id"]
    assert detail["versions"][0]["description"] == "Churn prediction model v1"
    assert "train_accuracy" in detail["versions"][0]["metrics"]

    r = client.put("/mlops/registry/churn_predictor/aliases/champion", json={"version": registered["version"]})
    assert r.status_code == 200 and r.json()["model_uri"] == "models:/churn_predictor@champion"
    assert client.get("/mlops/models/churn_predictor").json()["aliases"] == {"champion": registered["version"]}


def test_lightgbm_sync_and_xgboost_async(client: TestClient) -> None:
    r = client.post("/mlops/models", json=seed_body("lightgbm", "churn_lgbm", {"n_estimators": 20, "num_leaves": 7}))
    assert r.status_code == 200, r.text
    assert client.post("/mlops/registry", json={"model_name": "churn_lgbm", "run_id": r.json()["run_id"]}).status_code == 201

    body = {**seed_body("xgboost", "churn_xgb", {"n_estimators": 20, "max_depth": 3}), "async": True}
    r = client.post("/mlops/models", json=body)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["job_id"].startswith("train-") and job["status"] in ("pending", "running")
    deadline = time.monotonic() + 400
    while job["status"] not in ("completed", "failed") and time.monotonic() < deadline:
        time.sleep(2)
        job = client.get(f"/mlops/jobs/{job['job_id']}").json()
    assert job["status"] == "completed", job
    assert job["trials_total"] == 1 and job["trials_done"] == 1 and job["trials_failed"] == 0
    assert job["metric"] == "train_accuracy" and job["best_metric"] is not None
    assert job["result"]["run_id"] == job["run_id"]
    assert job["links"]["mlflow_run"].endswith(job["run_id"]) and "dashboard" in job["links"]
    assert job["links"]["ray_task"] == f"training:{job['job_id']}"
    r = client.post("/mlops/registry", json={"model_name": "churn_xgb", "run_id": job["run_id"]})
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "needle"),
    [
        ("post", "/mlops/models", {**seed_body("pytorch", "m", {})}, 422, "framework"),
        ("post", "/mlops/models", {**seed_body("sklearn", "m", {"n_trees": 3})}, 422, "n_trees"),
        ("post", "/mlops/models", {**seed_body("sklearn", "m", {}), "model_type": "ranking"}, 422, "model_type"),
        ("post", "/mlops/registry", {"model_name": "m", "run_id": "f" * 32}, 404, "ffff"),
        ("get", "/mlops/models/no_such_model", None, 404, "no_such_model"),
        ("get", "/mlops/jobs/train-000000000000", None, 404, "train-000000000000"),
        ("put", "/mlops/registry/no_such_model/aliases/champion", {"version": "1"}, 404, "no_such_model"),
    ],
)
def test_errors_are_json_with_the_reason(client: TestClient, method: str, path: str, body: Any, status: int, needle: str) -> None:
    r = client.request(method.upper(), path, json=body)
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]
