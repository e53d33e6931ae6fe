"""Jobs under faults, through the control API (in-process app, real local Ray, S3 and MLflow servers).

- 45 concurrent small batch requests: each ends ``completed``, ``failed`` with its cause, or is
  refused with 429 and ``Retry-After`` by the admission limit; none stays ``running``, and the
  cluster takes a new job afterwards.
- The job owner (the supervisor actor) is killed mid-write: the job reads ``failed`` with the cause,
  no manifest is written, and a re-run under the same job id scores every entity once.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from asgard_ray.api import create_app
from asgard_ray.config import Settings
from asgard_ray.scoring import read_manifest
from asgard_ray.scoring.manifest import manifest_uri
from asgard_ray.storage import exists, resolve
from tests.integration.test_scoring import register_churn_model

pytestmark = pytest.mark.integration

MODEL = "jobs_faults_churn"


@pytest.fixture(scope="module")
def version(settings: Settings, customer_features: str, ray_session: None) -> str:
    return register_churn_model(settings, MODEL, alias=None)


def _client(settings: Settings) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(settings))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=600)


async def _settle(client: httpx.AsyncClient, job_ids: list[str], timeout: float = 240) -> dict[str, dict]:
    """Read each job until it is finished (bounded); the read itself reconciles it with Ray."""
    deadline = time.monotonic() + timeout
    last: dict[str, dict] = {}
    while time.monotonic() < deadline:
        last = {j: (await client.get(f"/mlops/serve/batch/{j}")).json() for j in job_ids}
        if all(v["status"] in ("completed", "failed") for v in last.values()):
            return last
        await asyncio.sleep(1)
    return last


def test_45_concurrent_small_batches_end_completed_failed_or_429(settings: Settings, version: str) -> None:
    async def scenario() -> None:
        async with _client(settings) as client:
            bodies = [{"model_name": MODEL, "model_version": version, "feature_views": ["customer_features"],
                       "entities_df": {"customer_id": list(range(1, 11))}, "output_path": f"s3://asgard/test-jobs-45/out-{i}",
                       "overwrite": True} for i in range(45)]
            answers = await asyncio.gather(*(client.post("/mlops/serve/batch", json=b) for b in bodies))
            codes = [r.status_code for r in answers]
            assert set(codes) <= {200, 202, 429, 500}, codes
            for r in answers:
                if r.status_code == 429:
                    assert int(r.headers["Retry-After"]) > 0 and "limit" in r.json()["error"]
                if r.status_code == 500:
                    assert r.json()["status"] == "failed" and r.json()["error"]
            started = [r.json()["job_id"] for r in answers if r.status_code in (200, 202, 500)]
            assert started, codes  # the limit admits some
            final = await _settle(client, started)
            stuck = {j: v["status"] for j, v in final.items() if v["status"] not in ("completed", "failed")}
            assert not stuck, stuck
            assert all(v["error"] for v in final.values() if v["status"] == "failed")
            listed = (await client.get("/mlops/jobs", params={"kind": "batch_scoring", "limit": 100})).json()["jobs"]
            assert not [j for j in listed if j["job_id"] in started and j["status"] == "running"]
            # the cluster is usable afterwards
            after = await client.post("/mlops/serve/batch", json={**bodies[0], "output_path": "s3://asgard/test-jobs-45/after"})
            assert after.status_code == 200 and after.json()["status"] == "completed", after.text

    asyncio.run(scenario())


def test_killed_owner_mid_write_fails_cleanly_and_a_rerun_is_correct(settings: Settings, version: str) -> None:
    import ray

    from asgard_ray.jobs import get_supervisor

    fs, path = resolve(settings, "s3://asgard/test-jobs-faults/entities")
    ids = pa.Table.from_pandas(pd.DataFrame({"customer_id": np.arange(1, 20_001, dtype="int64")}), preserve_index=False)
    pq.write_table(ids, f"{path}/part-0.parquet", filesystem=fs)
    out, job_id = "s3://asgard/test-jobs-faults/owner-out", "batch-http-owner-kill"
    body = {"model_name": MODEL, "model_version": version, "job_id": job_id, "async": True, "overwrite": True,
            "entities_source": {"path": "s3://asgard/test-jobs-faults/entities"}, "output_path": out}

    async def scenario() -> None:
        async with _client(settings) as client:
            first = await client.post("/mlops/serve/batch", json=body)
            assert first.status_code == 202, first.text
            again = await client.post("/mlops/serve/batch", json=body)
            assert again.status_code == 409 and job_id in again.json()["error"]
            ray.kill(get_supervisor(settings), no_restart=False)
            final = (await _settle(client, [job_id], timeout=60))[job_id]
            if final["status"] == "completed":  # it beat the kill: still correct, nothing to clean
                assert read_manifest(settings, job_id).total_rows == 20_000
                return
            assert final["status"] == "failed" and "supervisor" in final["error"]
            assert not exists(settings, manifest_uri(out))
            rerun = await client.post("/mlops/serve/batch", json={**body, "async": False})
            assert rerun.status_code in (200, 202), rerun.text
            done = (await _settle(client, [job_id]))[job_id]
            assert done["status"] == "completed" and done["rows_done"] == 20_000
            manifest = read_manifest(settings, job_id)
            assert manifest.total_rows == 20_000 and sum(f.rows for f in manifest.files) == 20_000

    asyncio.run(scenario())
