"""``/mlops/monitoring`` over HTTP (TestClient) with the real actor, S3 and MLflow: the seed's curls and fixes."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from asgard_ray.api.app import create_app
from asgard_ray.config import Settings
from tests.integration.test_monitoring_compute import make_scored_output

pytestmark = pytest.mark.integration

SEED_POST = {
    "model_name": "churn_predictor", "model_version": "1", "metric_type": "prediction_drift",
    "metrics": {"drift_score": 0.15, "psi": 0.08, "js_divergence": 0.12},
    "reference_data": {"mean": 0.35, "std": 0.12}, "current_data": {"mean": 0.42, "std": 0.15},
    "tags": {"deployment": "production"},
}
SEED_HISTORY = {
    "model_name": "churn_predictor", "model_version": "1", "metric_type": "prediction_drift",
    "start_date": "2025-10-01T00:00:00Z", "end_date": "2025-10-17T23:59:59Z", "limit": 100,
}


@pytest.fixture(scope="module")
def api(settings: Settings, ray_session: None) -> TestClient:
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:  # keyless API: loopback Host only
        yield client


def test_seed_post_and_history_curls(api: TestClient) -> None:
    r = api.post("/mlops/monitoring", json=SEED_POST)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"monitoring_id", "model_name", "model_version", "metric_type", "metrics", "alert_triggered",
                         "alerts", "timestamp"}
    assert body["alert_triggered"] and "drift_score drift detected: 0.150" in body["alerts"]
    assert body["timestamp"].endswith("Z")
    r = api.post("/mlops/monitoring/history", json=SEED_HISTORY)  # the seed's Z dates used to be a 500
    assert r.status_code == 200, r.text
    assert r.json()["summary"]["date_range"] == {"start": "2025-10-01T00:00:00.000000Z", "end": "2025-10-17T23:59:59.000000Z"}
    r = api.post("/mlops/monitoring/history", json={**SEED_HISTORY, "start_date": None, "end_date": None})
    page = r.json()
    assert page["total_records"] >= 1 and page["records"][0]["monitoring_id"]
    assert page["summary"]["total_alerts"] >= 2 and page["summary"]["metric_types"] == ["prediction_drift"]


def test_p_value_semantics_and_validation_over_http(api: TestClient) -> None:
    model = f"pvalue_model_{uuid.uuid4().hex[:6]}"
    ok = api.post("/mlops/monitoring", json={**SEED_POST, "model_name": model, "metrics": {"ks_pvalue": 0.5}}).json()
    assert ok["alert_triggered"] is False  # the seed alerted on a p-value of 0.5
    bad = api.post("/mlops/monitoring", json={**SEED_POST, "model_name": model, "metrics": {"ks_pvalue": 0.01}}).json()
    assert bad["alert_triggered"] is True
    r = api.post("/mlops/monitoring", json={**SEED_POST, "metric_type": "latency"})
    assert r.status_code == 422
    for allowed in ("prediction_drift", "feature_drift", "data_quality", "model_performance", "custom"):
        assert allowed in r.json()["error"]
    assert api.post("/mlops/monitoring", json={**SEED_POST, "metrics": {}}).status_code == 422
    r = api.post("/mlops/monitoring", json={**SEED_POST, "metrics": {"psi": "high"}})
    assert r.status_code == 422 and "non-numeric" in r.json()["error"]


def test_history_get_form_exact_names_offsets_and_404(api: TestClient) -> None:
    model = f"hist_model_{uuid.uuid4().hex[:6]}"
    for version in ("1", "2", "2"):
        assert api.post("/mlops/monitoring", json={**SEED_POST, "model_name": model, "model_version": version}).status_code == 200
    api.post("/mlops/monitoring", json={**SEED_POST, "model_name": model + "_v2"})
    r = api.get("/mlops/monitoring/history", params={"model_name": model, "model_version": "2",
                                                     "start_date": "2020-01-01T02:00:00+02:00", "limit": 1})
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["total_records"] == 2 and len(page["records"]) == 1 and page["has_more"]
    assert all(rec["model_name"] == model for rec in page["records"])
    all_versions = api.get("/mlops/monitoring/history", params={"model_name": model}).json()
    assert all_versions["total_records"] == 3  # not the 4th record of model + "_v2"
    r = api.get("/mlops/monitoring/history", params={"model_name": model[:-2]})
    assert r.status_code == 404 and "no monitoring records" in r.json()["error"]
    r = api.get("/mlops/monitoring/history", params={"model_name": model, "start_date": "last week"})
    assert r.status_code == 422 and "ISO-8601" in r.json()["error"]


def test_rules_endpoints_change_alerts_per_model(api: TestClient) -> None:
    model = f"rules_model_{uuid.uuid4().hex[:6]}"
    r = api.put(f"/mlops/monitoring/rules/{model}", json={"rules": [
        {"name": "drift", "threshold": 0.5},
        {"name": "latency", "patterns": ["latency_ms"], "op": "gt", "threshold": 200}]})
    assert r.status_code == 200, r.text
    assert r.json()["effective"][0]["name"] == "drift" and r.json()["effective"][0]["threshold"] == 0.5
    res = api.post("/mlops/monitoring", json={**SEED_POST, "model_name": model}).json()
    assert res["alert_triggered"] is False  # drift 0.15 is fine under this model's 0.5
    res = api.post("/mlops/monitoring", json={**SEED_POST, "model_name": model, "metric_type": "custom",
                                              "metrics": {"latency_ms": 350}}).json()
    assert res["alerts"] == ["latency_ms above threshold: 350.000 (> 200)"]
    assert api.put("/mlops/monitoring/rules", json={"rules": [{"name": "new_rule", "threshold": 1}]}).status_code == 422
    glob = api.get("/mlops/monitoring/rules").json()
    assert [r["name"] for r in glob["effective"]][:2] == ["p_value", "missing_data"]


def test_compute_endpoint_runs_a_tracked_job(api: TestClient, settings: Settings) -> None:
    r = api.post("/mlops/monitoring/compute", json={"output_path": settings.s3_uri("predictions", "missing")})
    assert r.status_code == 404
    assert api.post("/mlops/monitoring/compute", json={}).status_code == 422
    model = f"api_drift_{uuid.uuid4().hex[:6]}"
    out = make_scored_output(settings, model)
    r = api.post("/mlops/monitoring/compute", json={"output_path": out["output_path"], "label_table": "customer_aggregates",
                                                    "wait_s": 300})
    assert r.status_code == 200, r.text
    job_id = r.json()["job_id"]
    job = api.get(f"/mlops/monitoring/compute/{job_id}").json()
    assert job["status"] == "completed", job
    assert job["ray_task_name"] == f"monitoring:{job_id}"
    assert len(job["result"]["monitoring_ids"]) == 4 and job["result"]["alert_triggered"]
    hist = api.get("/mlops/monitoring/history", params={"model_name": model, "metric_type": "feature_drift"}).json()
    assert hist["records"][0]["tags"]["compute_job_id"] == job_id
    page = api.get("/mlops/monitoring/dashboard", params={"model_name": model})
    assert page.status_code == 200 and model in page.text and "<svg" not in page.text  # charts are drawn by the script


def test_hostile_input_is_422_and_changes_nothing(api: TestClient) -> None:
    model = f"hostile_model_{uuid.uuid4().hex[:6]}"
    assert api.post("/mlops/monitoring", json={**SEED_POST, "model_name": model}).status_code == 200
    deep: dict = {}
    for _ in range(210):
        deep = {"a": deep}
    cases = [
        ({**SEED_POST, "model_name": model, "reference_data": deep}, "deeper than 32"),
        ({**SEED_POST, "model_name": model, "tags": {f"t{i}": "v" for i in range(101)}}, "tags"),
        ({**SEED_POST, "model_name": "a..b"}, "model_name"),
    ]
    for body, needle in cases:
        r = api.post("/mlops/monitoring", json=body)
        assert r.status_code == 422 and needle in r.text, r.text[:500]
    rules_before = api.get("/mlops/monitoring/rules").json()
    for raw in (f'{{"model_name": "{model}", "metric_type": "custom", "model_version": "1", "metrics": {{"x": NaN}}}}',
                '{"rules": [{"name": "drift", "threshold": Infinity}]}'):
        path = "/mlops/monitoring" if "metrics" in raw else "/mlops/monitoring/rules"
        method = api.post if "metrics" in raw else api.put
        r = method(path, content=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and "finite" in r.text, r.text[:500]
    for start in (12345, "9999-12-31T23:59:59-05:00"):
        r = api.post("/mlops/monitoring/history", json={"model_name": model, "start_date": start})
        assert r.status_code == 422 and "start_date" in r.text, r.text[:500]
    r = api.get("/mlops/monitoring/history", params={"model_name": model, "end_date": "9999-12-31T23:59:59-05:00"})
    assert r.status_code == 422, r.text[:500]
    assert api.post("/mlops/monitoring/history", json={"model_name": model}).json()["total_records"] == 1  # nothing stored
    assert api.get("/mlops/monitoring/rules").json() == rules_before  # the refused rule never applied
