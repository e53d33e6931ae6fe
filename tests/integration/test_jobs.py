"""The jobs core on a real local Ray: the supervisor owns job tasks, reconciles dead ones, admits, lists.

A slow scoring job (small batches with a pause) is killed by killing its owner, the detached
supervisor actor: Ray restarts the supervisor under a new epoch and stops the task, and the record
must say ``failed`` with the cause (never stay ``running``), with no manifest and no partial file.
A re-run of the same job id then scores every entity exactly once.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from asgard_ray.config import Settings
from asgard_ray.errors import Conflict, TooManyJobs
from asgard_ray.jobs import get_job_sync, get_supervisor, list_jobs_sync, run_sync, start_job_sync, wait_job_sync
from asgard_ray.scoring import BatchScoreRequest, PipelineOptions, read_manifest
from asgard_ray.scoring.manifest import manifest_uri
from asgard_ray.scoring.service import ScoringInput
from asgard_ray.scoring.sink import job_files
from asgard_ray.storage import exists, list_files, resolve
from tests.integration.test_scoring import register_churn_model

pytestmark = pytest.mark.integration

MODEL = "jobs_core_churn"
SLOW = PipelineOptions(num_actors=1, batch_size=100, batch_delay_s=0.3)


@pytest.fixture(scope="module")
def jobs_model(settings: Settings, customer_features: str) -> str:
    return register_churn_model(settings, MODEL, alias=None)


def _entities(settings: Settings, uri: str, n: int) -> None:
    fs, path = resolve(settings, uri)
    table = pa.Table.from_pandas(pd.DataFrame({"customer_id": np.arange(1, n + 1, dtype="int64")}), preserve_index=False)
    pq.write_table(table, f"{path}/part-0.parquet", filesystem=fs)


def _request(version: str, out: str, job_id: str, entities: str) -> BatchScoreRequest:
    return BatchScoreRequest.model_validate({
        "model_name": MODEL, "model_version": version, "job_id": job_id, "async": True, "overwrite": True,
        "entities_source": {"path": entities}, "output_path": out,
    })


def _until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise TimeoutError(f"{what} not seen within {timeout}s")


def test_killed_owner_fails_the_job_with_its_cause_and_a_rerun_is_exact(settings: Settings, ray_session: None,
                                                                          jobs_model: str) -> None:
    import ray

    entities, out, job_id = "s3://asgard/test-jobs/entities/slow", "s3://asgard/test-jobs/owner-out", "batch-owner-kill-1"
    _entities(settings, entities, 3000)
    started = start_job_sync("batch_scoring", ScoringInput(_request(jobs_model, out, job_id, entities), SLOW), settings, job_id)
    assert started.record.status == "running" and started.record.owner_epoch
    _until(lambda: job_files(settings, out, job_id), 180, "a first written file")

    # one run per job id, and the admission limit, while it runs
    with pytest.raises(Conflict, match=job_id):
        start_job_sync("batch_scoring", ScoringInput(_request(jobs_model, out, job_id, entities), SLOW), settings, job_id)
    limited = settings.model_copy(update={"asgard_max_running_jobs_scoring": 1})
    with pytest.raises(TooManyJobs) as refused:
        start_job_sync("batch_scoring", _request(jobs_model, "s3://asgard/test-jobs/other-out", "batch-owner-kill-2",
                                                 entities), limited, "batch-owner-kill-2")
    assert refused.value.retry_after > 0 and refused.value.detail["limit"] == 1

    ray.kill(get_supervisor(settings), no_restart=False)  # the owner dies; Ray restarts it under a new epoch
    failed = _until(lambda: (r := get_job_sync(settings, job_id, "batch_scoring")).status == "failed" and r, 60,
                    "the job failed")
    assert "supervisor" in (failed.error or "") and failed.error_type == "JobLost"
    assert not exists(settings, manifest_uri(out))
    _until(lambda: not job_files(settings, out, job_id), 60, "partial files removed")

    rerun = start_job_sync("batch_scoring", ScoringInput(_request(jobs_model, out, job_id, entities), None), settings, job_id)
    wait_job_sync(rerun, 240)
    done = get_job_sync(settings, job_id, "batch_scoring")
    assert done.status == "completed" and done.attempt == failed.attempt + 1, done.error
    manifest = read_manifest(settings, job_id)
    assert manifest.total_rows == 3000
    on_disk = sorted(f"s3://{f}" for f in list_files(settings, out) if f.endswith(".parquet"))
    assert on_disk == sorted(f.path for f in manifest.files)

    again = start_job_sync("batch_scoring", ScoringInput(_request(jobs_model, out, job_id, entities), None), settings, job_id)
    assert again.ref is None and again.record.status == "completed" and again.record.attempt == done.attempt


def test_job_list_reads_pages_newest_first(settings: Settings, ray_session: None, jobs_model: str) -> None:
    from asgard_ray.jobs import JobStore

    store = JobStore(settings)
    ids = [f"drift-page-{i}" for i in range(5)]
    for job_id in ids:
        store.create("monitoring", job_id, status="completed")
        time.sleep(0.01)  # distinct milliseconds: the index orders by creation time
    first, cursor = list_jobs_sync(settings, "monitoring", limit=3)
    assert [r.job_id for r in first] == ids[::-1][:3] and cursor
    second, _ = list_jobs_sync(settings, "monitoring", limit=3, cursor=cursor)
    assert [r.job_id for r in second][:2] == ids[::-1][3:5]
    everything, _ = list_jobs_sync(settings, None, limit=1000)
    assert {r.job_id for r in everything} >= set(ids)


def test_a_record_left_running_by_a_dead_task_is_failed_on_read(settings: Settings, ray_session: None) -> None:
    from asgard_ray.jobs import JobStore, get_job

    JobStore(settings).create("training", "train-orphan-0001", status="running", owner_epoch="gone00000000")
    record = run_sync(get_job(settings, "train-orphan-0001"))
    assert record.status == "failed" and "the job supervisor, restarted" in (record.error or "")
