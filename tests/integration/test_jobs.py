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
    limited = settings.model_copy(update={"asgard_max_running_jobs_scoring": 1, "asgard_max_queued_jobs_scoring": 0})
    with pytest.raises(TooManyJobs) as refused:
        start_job_sync("batch_scoring", _request(jobs_model, "s3://asgard/test-jobs/other-out", "batch-owner-kill-2",
                                                 entities), limited, "batch-owner-kill-2")
    assert refused.value.retry_after > 0 and refused.value.detail["queue_limit"] == 0

    ray.kill(get_supervisor(settings), no_restart=False)  # the owner dies; Ray restarts it under a new epoch
    failed = _until(lambda: (r := get_job_sync(settings, job_id, "batch_scoring")).status == "failed" and r, 60,
                    "the job failed")
    assert "supervisor" in (failed.error or "") and failed.error_type == "JobLost"
    assert not exists(settings, manifest_uri(out))
    _until(lambda: not job_files(settings, out, job_id), 60, "partial files removed")

    rerun = start_job_sync("batch_scoring", ScoringInput(_request(jobs_model, out, job_id, entities), None), settings, job_id)
    wait_job_sync(rerun, settings, 240)
    done = get_job_sync(settings, job_id, "batch_scoring")
    assert done.status == "completed" and done.attempt == failed.attempt + 1, done.error
    manifest = read_manifest(settings, job_id)
    assert manifest.total_rows == 3000
    on_disk = sorted(f"s3://{f}" for f in list_files(settings, out) if f.endswith(".parquet"))
    assert on_disk == sorted(f.path for f in manifest.files)

    again = start_job_sync("batch_scoring", ScoringInput(_request(jobs_model, out, job_id, entities), None), settings, job_id)
    assert again.record.status == "completed" and again.record.attempt == done.attempt


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


def _queued_world(settings: Settings, jobs_model: str, tag: str) -> tuple[Settings, str]:
    """Settings with one scoring job at a time and a queue of two, and a slow first job already running."""
    limited = settings.model_copy(update={"asgard_max_running_jobs_scoring": 1, "asgard_max_queued_jobs_scoring": 2})
    entities = f"s3://asgard/test-jobs/entities/{tag}"
    _entities(settings, entities, 3000)
    slow_id = f"batch-{tag}-slow"
    slow = start_job_sync("batch_scoring", ScoringInput(_request(jobs_model, f"s3://asgard/test-jobs/{tag}-slow", slow_id, entities), SLOW),
                          limited, slow_id)
    assert slow.record.status == "running", slow.record
    return limited, entities


def test_past_the_running_limit_jobs_queue_in_order_and_a_full_queue_is_429(settings: Settings, ray_session: None,
                                                                             jobs_model: str) -> None:
    limited, entities = _queued_world(settings, jobs_model, "fifo")
    firsts = [start_job_sync("batch_scoring", _request(jobs_model, f"s3://asgard/test-jobs/fifo-{i}", f"batch-fifo-{i}", entities),
                             limited, f"batch-fifo-{i}") for i in range(2)]
    assert [s.record.status for s in firsts] == ["queued", "queued"]
    assert [get_job_sync(limited, s.record.job_id, "batch_scoring").progress["queue_position"] for s in firsts] == [1, 2]
    with pytest.raises(TooManyJobs) as full:
        start_job_sync("batch_scoring", _request(jobs_model, "s3://asgard/test-jobs/fifo-x", "batch-fifo-x", entities), limited, "batch-fifo-x")
    assert full.value.retry_after >= 1 and full.value.detail["queued"] == 2 and full.value.detail["queue_limit"] == 2
    assert not exists(settings, "s3://asgard/test-jobs/fifo-x/_lease.json")  # the refused request's claim is gone
    done = [wait_job_sync(s, limited, 300) for s in firsts]
    assert [d.status for d in done] == ["completed", "completed"], [d.error for d in done]
    assert done[0].started_at is not None and done[1].started_at is not None and done[0].started_at <= done[1].started_at


def test_a_cancelled_queued_job_never_runs_and_leaves_no_output(settings: Settings, ray_session: None, jobs_model: str) -> None:
    from asgard_ray.jobs import cancel_job

    limited, entities = _queued_world(settings, jobs_model, "cancel")
    out, job_id = "s3://asgard/test-jobs/cancel-queued", "batch-cancel-queued"
    queued = start_job_sync("batch_scoring", _request(jobs_model, out, job_id, entities), limited, job_id)
    assert queued.record.status == "queued"
    assert exists(settings, f"{out}/_lease.json")  # the submission claimed its output path
    cancelled = run_sync(cancel_job(limited, job_id))
    assert cancelled.status == "cancelled" and "cancelled" in (cancelled.error or "")
    assert not list_files(settings, out), list_files(settings, out)  # no output, and the claim released
    with pytest.raises(Conflict, match="running"):
        run_sync(cancel_job(limited, "batch-cancel-slow"))
    wait_job_sync(start_job_sync("batch_scoring", _request(jobs_model, out + "-after", "batch-cancel-after", entities), limited,
                                 "batch-cancel-after"), limited, 300)
    assert get_job_sync(limited, job_id, "batch_scoring").status == "cancelled"
    assert not list_files(settings, out)


def test_a_queued_job_survives_a_supervisor_restart_and_runs_once(settings: Settings, ray_session: None, jobs_model: str) -> None:
    import ray

    limited, entities = _queued_world(settings, jobs_model, "restart")
    out, job_id = "s3://asgard/test-jobs/restart-queued", "batch-restart-queued"
    queued = start_job_sync("batch_scoring", _request(jobs_model, out, job_id, entities), limited, job_id)
    assert queued.record.status == "queued"
    ray.kill(get_supervisor(settings), no_restart=False)  # the running job dies with its owner; the queue is on S3
    done = _until(lambda: (r := get_job_sync(limited, job_id, "batch_scoring")).done and r, 300, "the queued job ran")
    assert done.status == "completed" and done.attempt == 0, done.error
    assert done.owner_epoch != queued.record.owner_epoch  # run by the new supervisor
    assert read_manifest(settings, job_id).total_rows == 3000
    assert get_job_sync(limited, "batch-restart-slow", "batch_scoring").status == "failed"
