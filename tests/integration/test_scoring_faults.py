"""Exactly-once batch scoring under faults: a killed worker, a crashed job re-run, a raising batch."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from asgard_ray.config import Settings
from asgard_ray.jobs import JobStore
from asgard_ray.scoring import BatchScoreRequest, BatchScoringService, PipelineOptions, read_manifest
from asgard_ray.scoring.manifest import manifest_uri
from asgard_ray.storage import list_files, resolve
from tests.integration.test_scoring import FEATURES, _read_output, register_churn_model

pytestmark = pytest.mark.integration

MODEL = "faults_churn"
SCORER_CLASS = "MapWorker(MapBatches(Scorer))"


@pytest.fixture(scope="module")
def faults_model(settings: Settings, customer_features: str) -> str:
    return register_churn_model(settings, MODEL, alias=None)


def _write(settings: Settings, uri: str, df: pd.DataFrame) -> None:
    fs, path = resolve(settings, uri)
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), f"{path}/part-0.parquet", filesystem=fs)


def _wait(scoring: BatchScoringService, job_id: str, timeout: float = 240) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = scoring.get(job_id).status
        if status in ("completed", "failed"):
            return status
        time.sleep(0.5)
    raise TimeoutError(f"job {job_id} still running after {timeout}s")


def _alive_scorers() -> dict[str, int]:
    from ray._private import state

    return {aid: a["Pid"] for aid, a in state.actors().items() if a.get("ActorClassName") == SCORER_CLASS and a.get("State") == "ALIVE"}


def _running_scoring_tasks() -> dict[str, int]:
    """Worker pids running a task that scores (``compute="tasks"``: scoring fused into the read/write tasks).

    A Ray worker titles its process ``ray::<task name>`` while it runs a task (this session's Ray has no
    dashboard, so no state API).
    """
    found = {}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        title = " ".join(proc.info.get("cmdline") or [])
        if title.startswith("ray::") and "_score_in_task" in title:
            found[str(proc.info["pid"])] = int(proc.info["pid"])
    return found


@pytest.mark.parametrize("compute", ["actors", "tasks"])
def test_killed_worker_mid_job_scores_every_entity_exactly_once(
    settings: Settings, ray_session: None, faults_model: str, compute: str
) -> None:
    n = 4000
    ents = pd.DataFrame({"customer_id": np.arange(1, n + 1, dtype="int64")})
    run = f"{compute}-{uuid.uuid4().hex[:6]}"  # a rerun starts clean
    _write(settings, f"s3://asgard/test-faults/entities/kill-{run}", ents)
    # small batches and a per-batch pause keep the job running long enough to kill a worker mid-way
    options = PipelineOptions(num_actors=2, batch_size=100, batch_delay_s=0.25, compute=compute)  # type: ignore[arg-type]
    scoring = BatchScoringService(settings, options)
    resp = scoring.submit(BatchScoreRequest.model_validate({
        "model_name": MODEL, "model_version": faults_model, "async": True,
        "entities_source": {"path": f"s3://asgard/test-faults/entities/kill-{run}"},
        "output_path": f"s3://asgard/test-faults/kill-out-{run}",
    }))
    assert resp.status == "running"
    killed: list[int] = []
    find = _alive_scorers if compute == "actors" else _running_scoring_tasks
    wanted = 2 if compute == "actors" else 1

    def killer() -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not killed:
            alive = find()
            if len(alive) >= wanted:
                time.sleep(1.5)  # let the workers get well into their batches
                pid = sorted(alive.values())[0]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.2)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    status = _wait(scoring, resp.job_id)
    thread.join(timeout=5)
    assert killed, f"no scoring worker ({compute}) was found to kill"
    assert status == "completed", scoring.get(resp.job_id).error
    manifest = read_manifest(settings, resp.output_path)
    assert manifest.total_rows == n
    out = _read_output(settings, resp.output_path)
    assert len(out) == n
    assert sorted(out["customer_id"].tolist()) == list(range(1, n + 1))  # none lost, none twice
    on_disk = sorted(f"s3://{f}" for f in list_files(settings, resp.output_path) if f.endswith(".parquet"))
    assert on_disk == sorted(f.path for f in manifest.files)


def test_rerun_of_a_crashed_job_does_not_duplicate_output(settings: Settings, ray_session: None, faults_model: str) -> None:
    out_path = "s3://asgard/test-faults/rerun-out"
    body = {
        "model_name": MODEL, "model_version": faults_model, "job_id": "batch-rerun-0001",
        "entities_df": {"customer_id": list(range(1, 501))}, "output_path": out_path,
    }
    scoring = BatchScoringService(settings)
    first = scoring.submit(BatchScoreRequest.model_validate(body))
    assert first.status == "completed" and first.job_id == "batch-rerun-0001"
    manifest = read_manifest(settings, out_path)
    # simulate a crash after the data was written but before the commit: no manifest, a stray
    # partial file of the same job id, and a job record stuck in "running"
    fs, path = resolve(settings, out_path)
    fs.delete_file(manifest_uri(out_path).removeprefix("s3://"))
    stray_dir = manifest.files[0].path.rsplit("/", 1)[0].removeprefix("s3://")
    pq.write_table(pa.table({"customer_id": [1, 2, 3]}), f"{stray_dir}/batch-rerun-0001_stale_000009-0.parquet", filesystem=fs)
    JobStore(settings).update("batch_scoring", "batch-rerun-0001", status="running")

    again = scoring.submit(BatchScoreRequest.model_validate(body))
    assert again.status == "completed" and again.total_rows == 500
    rerun_manifest = read_manifest(settings, out_path)
    assert rerun_manifest.job_id == "batch-rerun-0001" and rerun_manifest.total_rows == 500
    on_disk = sorted(f"s3://{f}" for f in list_files(settings, out_path) if f.endswith(".parquet"))
    assert on_disk == sorted(f.path for f in rerun_manifest.files)
    assert not any("stale" in f for f in on_disk)
    out = _read_output(settings, out_path)
    assert sorted(out["customer_id"].tolist()) == list(range(1, 501))

    # a third submission of the committed job answers from its output and writes nothing
    before = list_files(settings, out_path)
    third = scoring.submit(BatchScoreRequest.model_validate(body))
    assert third.status == "completed" and third.total_rows == 500
    assert list_files(settings, out_path) == before


def test_raising_batch_fails_fast_with_context_and_leaves_nothing(settings: Settings, ray_session: None, faults_model: str) -> None:
    bad = pd.DataFrame({
        "customer_id": np.arange(1, 301, dtype="int64"),
        "total_orders": ["many"] * 300,  # not numeric: the model raises on every batch
        "avg_order_value": np.ones(300),
        "days_since_last_order": np.ones(300, dtype="int64"),
    })
    _write(settings, "s3://asgard/test-faults/entities/bad", bad)
    scoring = BatchScoringService(settings)
    start = time.monotonic()
    resp = scoring.submit(BatchScoreRequest.model_validate({
        "model_name": MODEL, "model_version": faults_model,
        "entities_source": {"path": "s3://asgard/test-faults/entities/bad", "features_included": True},
        "output_path": "s3://asgard/test-faults/bad-out",
    }))
    assert resp.status == "failed"
    assert time.monotonic() - start < 120
    status = scoring.get(resp.job_id)
    assert status.status == "failed" and resp.job_id in (status.error or "")
    assert MODEL in status.error and "customer_id" in status.error
    assert list_files(settings, "s3://asgard/test-faults/bad-out") == []  # no manifest, no partial files


def test_ray_job_entrypoint_takes_the_same_body(settings: Settings, ray_session: None, faults_model: str) -> None:
    from jobs.batch_score import main

    body = {
        "model_name": MODEL, "model_version": faults_model, "feature_views": ["customer_features"],
        "entities_df": {"customer_id": list(range(1, 21))}, "output_path": "s3://asgard/test-faults/entrypoint",
    }
    result = main(["--request", json.dumps(body), "--job-id", "batch-entrypoint-1"])
    assert result["total_rows"] == 20 and result["job_id"] == "batch-entrypoint-1"
    assert read_manifest(settings, "batch-entrypoint-1").total_rows == 20
    assert JobStore(settings).get("batch_scoring", "batch-entrypoint-1").status == "completed"
    assert sorted(_read_output(settings, "s3://asgard/test-faults/entrypoint")["customer_id"]) == list(range(1, 21))
    assert FEATURES[0] in _read_output(settings, "s3://asgard/test-faults/entrypoint").columns
