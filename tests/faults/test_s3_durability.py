"""Fault: ``kill -9`` of the S3 server right after the platform's acknowledged writes; after a restart all are there.

Two scales, same story:

- the platform's own writers (``MonitoringState.log``, ``storage.write_json`` for a manifest, Feast
  feature-view registration) against a private S3 server process, killed with SIGKILL as soon as the
  calls return, then started again on the same folder;
- the live embedded stack: writes over HTTP and through the storage layer, SIGKILL of the stack's S3
  server by its pid file, ``asgard up``, and every object read back from S3 itself (not from the
  monitoring actor's memory).
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from asgard_ray.config import Settings
from asgard_ray.features import FeatureRegistry, FeatureViewSpec
from asgard_ray.features.specs import SEED_EXAMPLE
from asgard_ray.gold import resolve_table
from asgard_ray.local.bootstrap import prepare_feast_repo, prepare_storage
from asgard_ray.local.procs import PidFiles
from asgard_ray.monitoring.schemas import MonitoringRequest
from asgard_ray.monitoring.state import MonitoringState
from asgard_ray.storage import list_files, read_bytes, read_json, write_json
from tests.conftest import api_url, asgard, free_port, isolated_settings, stack_settings
from tests.integration.test_s3server import S3Process

pytestmark = pytest.mark.integration

RECORD = {
    "model_name": "churn_predictor", "model_version": "1", "metric_type": "prediction_drift",
    "metrics": {"drift_score": 0.15, "psi": 0.08}, "tags": {"case": "s3-kill-9"},
}


def _manifest(job_id: str) -> dict[str, object]:
    return {"job_id": job_id, "status": "completed", "rows": 1000, "files": [f"part-{i:05d}.parquet" for i in range(4)]}


@pytest.fixture
def private_s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[S3Process, Settings]]:
    """A private S3 server process and Settings pointing at it (this process's env too, for Feast)."""
    s3 = S3Process(tmp_path / "s3", tmp_path / "s3server.log").start()
    try:  # stopped even when the set-up below fails
        home = tmp_path / "home"
        settings = isolated_settings(
            asgard_home=home, s3_endpoint_url=s3.endpoint, asgard_s3_port=s3.port, feast_repo_path=home / "feast_repo",
            mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}",
        )
        for name, value in settings.worker_env().items():
            monkeypatch.setenv(name, value)
        prepare_storage(settings)
        prepare_feast_repo(settings)
        yield s3, settings
    finally:
        s3.stop()


def test_platform_writes_survive_kill9_of_the_s3_server(private_s3: tuple[S3Process, Settings]) -> None:
    s3, settings = private_s3
    prefix = f"monitoring-{uuid.uuid4().hex[:8]}"
    state = MonitoringState(settings, prefix=prefix, mirror=False, compact=False)
    record = state.log(MonitoringRequest.model_validate(RECORD))  # acknowledged: the record's PUT returned
    manifest_uri = settings.state_uri("scoring_staging", "job-kill9", "_manifest.json")
    write_json(settings, manifest_uri, _manifest("job-kill9"))
    view = FeatureViewSpec.model_validate({**SEED_EXAMPLE, "name": "kill9_features"})
    assert FeatureRegistry(settings).register_here(view).status == "registered"

    s3.restart()  # SIGKILL right after the acknowledgements, then start on the same folder
    state.close()

    rebuilt = MonitoringState(settings, prefix=prefix, mirror=False, compact=False)
    try:
        assert rebuilt.get(record.monitoring_id).model_dump() == state.get(record.monitoring_id).model_dump()
        assert rebuilt.count() == 1
    finally:
        rebuilt.close()
    assert read_json(settings, manifest_uri) == _manifest("job-kill9")
    assert FeatureRegistry(settings).get("kill9_features").name == "kill9_features"
    # the gold table (Iceberg: metadata, manifests and data files on S3) too
    assert resolve_table(settings, "customer_aggregates").read(settings, ["customer_id"]).num_rows == 40_000


@pytest.mark.e2e
def test_live_stack_s3_kill9_then_up_keeps_acknowledged_writes(stack: dict[str, str]) -> None:
    api = api_url(stack)
    settings = stack_settings(stack)
    tag = uuid.uuid4().hex[:8]
    posted = httpx.post(f"{api}/mlops/monitoring", json={**RECORD, "tags": {"case": tag}}, timeout=60)
    assert posted.status_code == 200, posted.text
    monitoring_id = posted.json()["monitoring_id"]
    view_name = f"kill9_{tag}"
    created = httpx.post(f"{api}/feast/features", json={**SEED_EXAMPLE, "name": view_name}, timeout=120)
    assert created.status_code in (200, 201), created.text
    manifest_uri = settings.state_uri("scoring_staging", f"job-{tag}", "_manifest.json")  # where the platform stages output
    write_json(settings, manifest_uri, _manifest(tag))

    pids = PidFiles(Path(stack["ASGARD_HOME"]))
    (pid,) = pids.read("s3")
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while pids.alive("s3") and time.monotonic() < deadline:
        time.sleep(0.2)
    up = asgard(stack, "up")  # brings the S3 server back; the stack is whole again for later tests
    assert up.returncode == 0, up.stdout + up.stderr
    assert pids.read("s3") != [pid]

    assert read_json(settings, manifest_uri) == _manifest(tag)
    records = [
        json.loads(line)
        for uri in list_files(settings, settings.s3_uri("monitoring", "records"))
        if uri.endswith(".jsonl")
        for line in read_bytes(settings, uri if uri.startswith("s3://") else f"s3://{uri}").splitlines()
    ]
    assert monitoring_id in {r["monitoring_id"] for r in records}  # on S3 itself, not only in the actor
    got = httpx.get(f"{api}/feast/features/{view_name}", timeout=60)  # Feast reads its registry from S3
    assert got.status_code == 200, got.text
