"""MLflow on Postgres: the seed's workflow, and 20 parallel registrations of one run making exactly one version.

The stack's ``mlflow server`` keeps runs and the model registry in Postgres (artifacts on the S3
server). The checks read Postgres itself, so they would fail on any other backend store.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.production.conftest import MODEL, ProdStack
from tests.production.workflow import SeedRun

pytestmark = [pytest.mark.production, pytest.mark.timeout(900)]


def list_keys(stack: ProdStack, prefix: str) -> list[str]:
    """Keys under ``prefix`` in the stack's bucket, read from its S3 server."""
    import boto3

    s = stack.settings
    client = boto3.client(
        "s3",
        endpoint_url=s.s3_endpoint,
        aws_access_key_id=s.aws_access_key_id,
        aws_secret_access_key=s.aws_secret_access_key,
        region_name=s.aws_region,
    )
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=s.s3_bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


N_PARALLEL = 20


def test_seed_workflow_runs_on_postgres(prod_stack: ProdStack, seed: SeedRun) -> None:
    """Register features, train, register, batch score and monitor; MLflow's rows are in Postgres."""
    assert seed.run_id and seed.version == "1", seed
    assert seed.drift["status"] == "completed", seed.drift
    result = seed.drift["result"]
    assert result["rows"] == 1000 and "total_orders" in result["features"], result
    assert result["monitoring_ids"], result
    assert any("drift_score" in a for a in seed.manual_alerts), seed.manual_alerts  # 0.15 > 0.1: the seed's alert
    assert seed.history_total >= 2
    with prod_stack.postgres.connect("mlflow") as db:  # type: ignore[attr-defined]
        runs = db.execute("SELECT status, artifact_uri FROM runs WHERE run_uuid = %s", (seed.run_id,)).fetchall()
        versions = db.execute("SELECT version, run_id FROM model_versions WHERE name = %s", (MODEL,)).fetchall()
        alias = db.execute("SELECT version FROM registered_model_aliases WHERE name = %s AND alias = 'champion'", (MODEL,)).fetchall()
        trials = db.execute("SELECT count(*) FROM tags WHERE key = 'mlflow.parentRunId' AND value = %s", (seed.run_id,)).fetchone()
    assert [status for status, _ in runs] == ["FINISHED"]
    assert versions == [(1, seed.run_id)]
    assert alias == [(1,)]
    assert trials == (2,)  # one nested run per trial
    # artifacts stayed on the S3 server, proxied by MLflow: the run's files are objects in the bucket
    assert runs[0][1].startswith("mlflow-artifacts:"), runs
    keys = list_keys(prod_stack, "mlflow-artifacts/")
    assert any(seed.run_id in k for k in keys), keys[:20]


def test_parallel_registrations_of_one_run_make_one_version(prod_stack: ProdStack, seed: SeedRun) -> None:
    """20 requests at once register one run under a new name: one 201, nineteen 200, one version in Postgres."""
    name = "prod_race"
    barrier = threading.Barrier(N_PARALLEL, timeout=60)

    def register(i: int) -> tuple[int, dict[str, Any]]:
        with httpx.Client(base_url=prod_stack.api_url, timeout=300) as api:
            barrier.wait()
            r = api.post("/mlops/registry", json={"model_name": name, "run_id": seed.run_id, "tags": {"attempt": str(i)}})
            return r.status_code, r.json()

    with ThreadPoolExecutor(max_workers=N_PARALLEL) as pool:
        answers = list(pool.map(register, range(N_PARALLEL)))

    codes = sorted(code for code, _ in answers)
    assert codes == [200] * (N_PARALLEL - 1) + [201], answers
    assert {body["version"] for _, body in answers} == {answers[0][1]["version"]}, answers
    assert sorted(body["status"] for _, body in answers).count("registered") == 1, answers
    # MLflow deletes a version by marking its row 'Deleted_Internal' (the losers of the race, removed by the
    # platform, stay as such rows); every live version is one MLflow's API lists
    with prod_stack.postgres.connect("mlflow") as db:  # type: ignore[attr-defined]
        rows = db.execute("SELECT version, run_id, current_stage FROM model_versions WHERE name = %s", (name,)).fetchall()
        models = db.execute("SELECT count(*) FROM registered_models WHERE name = %s", (name,)).fetchone()
    live = [(str(v), run) for v, run, stage in rows if stage != "Deleted_Internal"]
    assert live == [(str(answers[0][1]["version"]), seed.run_id)], rows
    assert models == (1,)
    import mlflow

    uri = prod_stack.settings.tracking_uri  # and its registry: another test may have set a global registry URI
    listed = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri).search_model_versions(f"name='{name}'")
    assert [(str(v.version), v.run_id) for v in listed] == live
