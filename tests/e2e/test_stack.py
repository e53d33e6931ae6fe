"""``asgard up`` / ``down`` / ``up`` on its own home and ports; step 1 of the seed over HTTP survives it.

The same restart cycle holds the fault "``asgard down`` / ``up`` in the middle of a job" (issue 11): an
async scoring job is running when the stack goes down; after ``up`` its record is not left ``running``
(reading it fails it with the lost owner as the cause, within 30 s), its output has no manifest, and a
re-run of the same body completes. One cycle serves both, because each ``up`` costs about a minute of CI.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from asgard_ray.scoring.manifest import manifest_uri
from asgard_ray.scoring.sink import job_files
from asgard_ray.storage import exists
from tests.conftest import SEED_FEATURE_SPEC, stack_settings
from tests.e2e.conftest import api_url, asgard
from tests.faults.test_lifecycle_faults import register_stack_model, running_task_pid, score_body, settle, until, write_entities

pytestmark = pytest.mark.e2e


def test_up_register_down_up_keeps_state(stack: dict[str, str]) -> None:
    assert (Path(stack["ASGARD_HOME"]) / "run" / "ray.pid").exists()
    again = asgard(stack, "up")  # idempotent: everything is healthy, nothing new starts
    assert again.returncode == 0, again.stderr
    pids_before = (Path(stack["ASGARD_HOME"]) / "run" / "ray.pid").read_text()

    api = api_url(stack)
    assert httpx.get(f"{api}/mlops/health", timeout=30).json()["warm"] is True  # `up` returns once the API is warm
    r = httpx.post(f"{api}/feast/features", json=SEED_FEATURE_SPEC, timeout=120)
    assert r.status_code in (200, 201), r.text
    assert r.json()["name"] == "customer_features"
    status = httpx.get(f"{api}/mlops/status", timeout=60).json()
    assert {c["name"]: c["healthy"] for c in status["components"]} == {
        "ray": True,
        "mlflow": True,
        "s3": True,
        "feast": True,
        "monitoring": True,
        "jobs": True,
    }
    assert pids_before == (Path(stack["ASGARD_HOME"]) / "run" / "ray.pid").read_text()

    # a job in the middle of its work when the stack goes down
    n, out, job_id = 30_000, "s3://asgard/test-stack/restart-out", "batch-stack-restart"
    write_entities(stack, "s3://asgard/test-stack/restart-entities", n)
    job = score_body("stack_restart_churn", register_stack_model(stack, "stack_restart_churn"), out, job_id=job_id,
                     entities_source={"path": "s3://asgard/test-stack/restart-entities"})  # fmt: skip
    started = httpx.post(f"{api}/mlops/serve/batch", json={**job, "async": True}, timeout=300)
    assert started.status_code in (200, 202), started.text  # 200: a re-run (pytest --reruns) found it completed
    if started.status_code == 202:
        until(lambda: running_task_pid(stack, f"batch_scoring:{job_id}"), 120, "the job's Ray task running", 0.3)

    stopped = asgard(stack, "down", timeout=120)
    assert stopped.returncode == 0
    assert "ray" in stopped.stdout and "s3" in stopped.stdout
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{api}/mlops/health", timeout=2)

    second = asgard(stack, "up")
    assert second.returncode == 0, second.stdout + second.stderr
    assert httpx.get(f"{api}/mlops/health", timeout=30).json()["warm"] is True  # a new replica, warm before `up` returned
    listed = httpx.get(f"{api}/feast/features", timeout=60).json()
    assert "customer_features" in [v["name"] for v in listed["feature_views"]]
    same = httpx.post(f"{api}/feast/features", json=SEED_FEATURE_SPEC, timeout=120)
    assert same.status_code == 200 and same.json()["status"] == "unchanged"
    assert asgard(stack, "status").returncode == 0

    # the job that was running at `down`: not left running; failed with the lost owner as the cause, or completed
    read_at = time.monotonic()
    record = until(lambda: (r := httpx.get(f"{api}/mlops/serve/batch/{job_id}", timeout=60).json())["status"] != "running" and r,
                   30, "the interrupted job settled")  # fmt: skip
    print(f"interrupted job {job_id}: {record['status']} {time.monotonic() - read_at:.1f}s after the first read: {record['error']}")
    settings = stack_settings(stack)
    if record["status"] == "failed":
        assert "supervisor" in record["error"] and "restarted" in record["error"], record["error"]
        assert not exists(settings, manifest_uri(out))
        until(lambda: not job_files(settings, out, job_id), 60, "partial files removed")
    else:
        assert record["status"] == "completed" and record["rows_done"] == n, record
    rerun = httpx.post(f"{api}/mlops/serve/batch", json=job, timeout=600)  # 30,000 rows: answered 202, then followed
    assert rerun.status_code in (200, 202), rerun.text
    done = settle(api, job_id)
    assert done["status"] == "completed" and done["rows_done"] == n, done
    assert exists(settings, manifest_uri(out))
