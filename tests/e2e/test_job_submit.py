"""Every job entrypoint through ``ray job submit`` (JobSubmissionClient) against the embedded stack."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import SEED_FEATURE_SPEC
from tests.e2e.conftest import dashboard_url, token_path

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def submit(env: dict[str, str], entrypoint: str, timeout: float = 600) -> str:
    """Submit ``entrypoint`` with the repo as working dir; wait; return the logs (fails on job failure)."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    # the stack's own token, as a user's `eval "$(asgard token --env)"` would give it
    headers = {"Authorization": f"Bearer {token_path(env).read_text().strip()}"}
    client = JobSubmissionClient(dashboard_url(env), headers=headers)
    job_id = client.submit_job(entrypoint=entrypoint, runtime_env={"working_dir": str(REPO)})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get_job_status(job_id)
        if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            break
        time.sleep(1)
    logs = client.get_job_logs(job_id)
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    return logs


def last_json(logs: str) -> dict:
    """The last line of the job's output that is a JSON object."""
    for line in reversed(logs.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise AssertionError(f"no JSON result in logs: {logs[-2000:]}")


def test_register_features_job(stack: dict[str, str]) -> None:
    spec = {**SEED_FEATURE_SPEC, "name": "customer_features_job"}
    out = last_json(submit(stack, f"python jobs/register_features.py --request '{json.dumps(spec)}'"))
    assert out["name"] == "customer_features_job"
    assert out["status"] in ("registered", "unchanged")
    assert [f["name"] for f in out["features"]] == ["total_orders", "avg_order_value", "days_since_last_order"]


def test_train_score_monitor_jobs(stack: dict[str, str]) -> None:
    """Train, then (after registering over HTTP) score and compute drift, each as a Ray job."""
    import httpx

    from tests.e2e.conftest import api_url

    api = api_url(stack)
    httpx.post(f"{api}/feast/features", json=SEED_FEATURE_SPEC, timeout=120).raise_for_status()
    train_body = {
        "experiment_name": "jobs_e2e", "model_name": "jobs_churn", "framework": "lightgbm", "model_type": "classification",
        "data_source": {"feature_views": ["customer_features"], "entities": {"customer_id": list(range(1, 401))},
                        "target_column": "churned"},
        "hyperparameters": {"params": {"n_estimators": 20, "num_leaves": 7}},
    }
    trained = last_json(submit(stack, f"python jobs/train.py --request '{json.dumps(train_body)}'"))
    assert trained["status"] == "completed"
    assert trained["model_uri"] == f"runs:/{trained['run_id']}/model"
    assert 0.0 <= trained["metrics"]["metrics"]["roc_auc"] <= 1.0

    reg = httpx.post(f"{api}/mlops/registry", json={"model_name": "jobs_churn", "run_id": trained["run_id"]}, timeout=120)
    assert reg.status_code in (200, 201), reg.text
    version = str(reg.json()["version"])

    score_body = {
        "model_name": "jobs_churn", "model_version": version, "feature_views": ["customer_features"],
        "entities_df": {"customer_id": list(range(1, 301))}, "output_path": "s3://my-bucket/jobs-e2e/predictions",
        "overwrite": True,
    }
    scored = last_json(submit(stack, f"python jobs/batch_score.py --request '{json.dumps(score_body)}'"))
    assert scored["total_rows"] == 300
    assert str(scored["model_version"]) == version
    job_id = scored["job_id"]
    status = httpx.get(f"{api}/mlops/serve/batch/{job_id}", timeout=60).json()
    assert status["status"] == "completed" and status["rows_done"] == 300

    drift = last_json(submit(stack, f"python jobs/monitor.py --job-id {job_id}"))
    assert drift["scoring_job_id"] == job_id
    assert drift["rows"] == 300
    assert len(drift["monitoring_ids"]) >= 2
    history = httpx.post(f"{api}/mlops/monitoring/history", timeout=60, json={
        "model_name": "jobs_churn", "model_version": version, "metric_type": "feature_drift"}).json()
    computed = [r for r in history["records"] if r["monitoring_id"] in drift["monitoring_ids"]]
    assert computed, history
    assert any(key.endswith(".psi") for key in computed[0]["metrics"]), computed[0]["metrics"]
