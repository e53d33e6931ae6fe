"""Step 4 of the seed over HTTP: ``POST /mlops/serve/batch``, then follow and list the job."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from asgard_ray.api import create_app
from asgard_ray.config import Settings
from asgard_ray.scoring import read_manifest
from tests.integration.test_scoring import _read_output, register_churn_model

pytestmark = pytest.mark.e2e

SEED_STEP4 = {
    "model_name": "churn_predictor",
    "model_version": "1",
    "feature_views": ["customer_features"],
    "entities_df": {"customer_id": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]},
    "output_path": "s3://my-bucket/predictions/batch_2025_10_17.parquet",
}


@pytest.fixture(scope="module")
def client(settings: Settings, ray_session: None, customer_features: str) -> Iterator[TestClient]:
    from mlflow.tracking import MlflowClient

    try:
        MlflowClient(settings.tracking_uri).get_model_version("churn_predictor", "1")
    except Exception:
        register_churn_model(settings, "churn_predictor")
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:  # keyless API: loopback Host only
        yield c


def test_seed_step4_curl_as_written(settings: Settings, client: TestClient) -> None:
    body = dict(SEED_STEP4)
    r = client.post("/mlops/serve/batch", json=body)
    if r.status_code == 409:  # the output exists from an earlier test in this session
        r = client.post("/mlops/serve/batch", json={**body, "overwrite": True})
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["status"] == "completed" and data["model_version"] == "1"
    assert data["output_path"] == SEED_STEP4["output_path"] and data["job_id"].startswith("batch-")
    job = client.get(f"/mlops/serve/batch/{data['job_id']}").json()
    assert job["status"] == "completed" and job["rows_done"] == job["rows_total"] == 10
    assert job["manifest_path"] == SEED_STEP4["output_path"] + "/_manifest.json"
    listed = client.get("/mlops/serve/batch").json()
    assert data["job_id"] in [j["job_id"] for j in listed["jobs"]]
    manifest = read_manifest(settings, data["job_id"])
    assert manifest.total_rows == 10 and manifest.model_name == "churn_predictor"
    rows = _read_output(settings, SEED_STEP4["output_path"])
    assert sorted(rows["customer_id"]) == list(range(1, 11)) and rows["prediction"].notna().all()
    # the same body again would overwrite committed output: refused
    again = client.post("/mlops/serve/batch", json=body)
    assert again.status_code == 409 and "overwrite" in again.json()["error"]


def test_async_job_answers_202_and_is_followed(client: TestClient) -> None:
    r = client.post("/mlops/serve/batch", json={
        **SEED_STEP4, "model_version": "champion", "async": True, "output_path": "s3://my-bucket/predictions/async-e2e",
        "overwrite": True,
    })
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        job = client.get(f"/mlops/serve/batch/{job_id}").json()
        if job["status"] in ("completed", "failed"):
            break
        time.sleep(0.5)
    assert job["status"] == "completed", job
    assert job["rows_done"] == 10 and job["model_version"] == "1"


@pytest.mark.parametrize(
    ("change", "code", "needle"),
    [
        ({"model_name": "nobody"}, 404, "nobody"),
        ({"model_version": "42"}, 404, "version 42"),
        ({"output_path": "s3://not-allowed/x"}, 422, "ASGARD_OUTPUT_BUCKETS"),
        ({"entities_df": {"customer_id": [1, 2.5]}}, 422, "customer_id"),
        ({"entities_df": {"customer_id": list(range(100_001))}}, 413, "entities_source"),
        ({"entities_df": None}, 422, "entities_source"),
    ],
)
def test_bad_requests_get_clear_errors(client: TestClient, change: dict, code: int, needle: str) -> None:
    body = {**SEED_STEP4, "output_path": "s3://my-bucket/predictions/bad", **change}
    r = client.post("/mlops/serve/batch", json=body)
    assert r.status_code == code, r.text
    assert needle in r.text


def test_unknown_job_is_404(client: TestClient) -> None:
    r = client.get("/mlops/serve/batch/batch-doesnotexist")
    assert r.status_code == 404 and "batch-doesnotexist" in r.json()["error"]
