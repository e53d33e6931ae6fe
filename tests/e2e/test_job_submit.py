"""Every job entrypoint through ``ray job submit`` (JobSubmissionClient) against the embedded stack."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.conftest import SEED_FEATURE_SPEC
from tests.e2e.conftest import dashboard_url

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def submit(env: dict[str, str], entrypoint: str, timeout: float = 600) -> str:
    """Submit ``entrypoint`` with the repo as working dir; wait; return the logs (fails on job failure)."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    os.environ["RAY_AUTH_MODE"] = "token"
    client = JobSubmissionClient(dashboard_url(env))
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
