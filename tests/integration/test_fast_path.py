"""The small-work fast path (warm workers): the same answers as the cluster path, and it survives a kill.

Each pair runs one request twice on the real local Ray, MLflow server and S3 server: once as the
platform runs it (small work goes to the supervisor's warm worker) and once with the fast path off
(``ASGARD_FAST_PATH_ROWS=0``: Tune trials and a refit task; Ray Data for scoring).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import mlflow
import numpy as np
import pytest
import ray

from asgard_ray.config import Settings
from asgard_ray.jobs import JobStore, get_supervisor
from asgard_ray.scoring import BatchScoreRequest, BatchScoringService, read_manifest, read_scored_rows
from asgard_ray.training import TrainingService, TrainRequest, TrainResponse
from tests.integration.test_scoring import register_churn_model
from tests.integration.test_training import child_runs, request_body

pytestmark = pytest.mark.integration

MODEL = "fast_path_churn"


def _cluster(settings: Settings) -> Settings:
    return settings.model_copy(update={"asgard_fast_path_rows": 0})


def _warm_workers(settings: Settings, timeout: float = 180) -> list[dict[str, Any]]:
    """The supervisor's warm workers, once one is ready (its imports take seconds on a busy machine)."""
    deadline = time.monotonic() + timeout
    while True:
        workers = ray.get(get_supervisor(settings).info.remote(), timeout=30)["warm_workers"]
        if any(w["ready"] and w["job_id"] is None for w in workers) or time.monotonic() > deadline:
            return workers
        time.sleep(0.5)


def _train(settings: Settings, body: dict[str, Any]) -> TrainResponse:
    result = TrainingService(settings).train(TrainRequest.model_validate(body))
    assert isinstance(result, TrainResponse), result
    return result


def test_training_paths_give_the_same_model_and_say_which_ran(settings: Settings, customer_features: str) -> None:
    assert any(w["ready"] for w in _warm_workers(settings))
    body = request_body(
        customer_features,
        n_ids=120,
        hyperparameters={"params": {"n_estimators": 15, "random_state": 3}, "search_space": {"max_depth": {"type": "grid", "values": [2, 4]}}},
    )
    warm = _train(settings, body)
    cluster = _train(_cluster(settings), body)

    assert warm.execution["path"] == "warm" and cluster.execution["path"] == "cluster"
    assert warm.num_trials == cluster.num_trials == 2 and warm.failed_trials == cluster.failed_trials == 0
    assert warm.best_params == cluster.best_params
    assert warm.metrics.metrics == cluster.metrics.metrics  # the same fits, bit for bit
    client = mlflow.MlflowClient(tracking_uri=settings.tracking_uri)
    for result, path in ((warm, "warm"), (cluster, "cluster")):
        run = client.get_run(result.run_id)
        assert run.data.tags["asgard.execution_path"] == path and run.info.status == "FINISHED"
        children = child_runs(settings, result)
        assert len(children) == 2 and {c.info.status for c in children} == {"FINISHED"}
        assert JobStore(settings).get("training", result.job_id).progress["execution_path"] == path
    # the two logged models predict the same
    frame = {"total_orders": [3, 40], "avg_order_value": [50.0, 12.5], "days_since_last_order": [30, 2]}
    import pandas as pd

    preds = [mlflow.pyfunc.load_model(r.model_uri).predict(pd.DataFrame(frame)) for r in (warm, cluster)]
    assert np.array_equal(np.asarray(preds[0]), np.asarray(preds[1]))


def test_large_requests_take_the_cluster_path_and_few_sampled_trials_the_warm_one(settings: Settings, customer_features: str) -> None:
    from asgard_ray.training.modes import fast_path

    sampled = TrainRequest.model_validate(
        request_body(customer_features, hyperparameters={"search_space": {"max_depth": {"type": "randint", "low": 2, "high": 5}}})
    )
    assert fast_path(sampled, settings) == (True, "300 entity rows, 4 trial(s)")  # seeded draws: known up front
    big = TrainRequest.model_validate(request_body(customer_features, n_ids=3000))
    ok, why = fast_path(big, settings)
    assert not ok and "6,000 entity rows > ASGARD_FAST_PATH_ROWS=5,000" in why
    grid = {"max_depth": {"type": "grid", "values": [2, 3, 4]}, "min_samples_leaf": {"type": "grid", "values": [1, 2, 3]}}
    ok, why = fast_path(TrainRequest.model_validate(request_body(customer_features, hyperparameters={"search_space": grid})), settings)
    assert not ok and "9 trials > ASGARD_FAST_PATH_TRIALS=8" in why
    assert fast_path(TrainRequest.model_validate(request_body(customer_features)), _cluster(settings))[0] is False


def test_scoring_paths_write_the_same_rows(settings: Settings, customer_features: str) -> None:
    version = register_churn_model(settings, MODEL, alias=None)
    ids = list(range(1, 201))
    outputs = {}
    for path, run_settings in (("warm", settings), ("cluster", _cluster(settings))):
        _warm_workers(settings)
        body = {
            "model_name": MODEL,
            "model_version": version,
            "feature_views": ["customer_features"],
            "entities_df": {"customer_id": ids, "event_timestamp": ["2025-09-15T00:00:00+00:00"] * len(ids)},
            "output_path": f"s3://asgard/test-fast-path/{path}",
            "overwrite": True,
        }
        resp = BatchScoringService(run_settings).submit(BatchScoreRequest.model_validate(body))
        assert resp.status == "completed", resp.error
        assert resp.execution_path == path and resp.total_rows == len(ids)
        manifest = read_manifest(settings, resp.output_path)
        assert manifest.execution_path == path and manifest.total_rows == len(ids)
        assert {"model_load_s", "features_s", "score_write_s", "total_s"} <= set(manifest.timings)
        outputs[path] = read_scored_rows(settings, resp.output_path).sort_values("customer_id").reset_index(drop=True)
    warm, cluster = outputs["warm"], outputs["cluster"]
    assert list(warm.columns) == list(cluster.columns)
    same = ["customer_id", "event_timestamp", "total_orders", "avg_order_value", "days_since_last_order",
            "prediction", "prediction_proba", "proba_0", "proba_1", "model_version", "score_date"]
    for col in same:
        assert warm[col].tolist() == cluster[col].tolist(), col


def test_killed_warm_worker_fails_its_job_with_the_cause_and_the_next_small_job_runs(
    settings: Settings, customer_features: str
) -> None:
    workers = _warm_workers(settings)
    pid = next(w["pid"] for w in workers if w["ready"])
    body = request_body(
        customer_features,
        n_ids=2000,
        hyperparameters={"params": {"n_estimators": 300, "random_state": 1}, "search_space": {"max_depth": {"type": "grid", "values": [6, 8, 10, 12]}}},
        **{"async": True},
    )
    service = TrainingService(settings)
    job_id = service.start(TrainRequest.model_validate(body)).job_id
    store = JobStore(settings)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and store.get("training", job_id).progress.get("run_id") is None:
        time.sleep(0.2)  # fitting by now: its parent run exists
    record = store.get("training", job_id)
    assert record.status == "running" and record.progress["execution_path"] == "warm", record
    pid = record.progress["warm_worker_pid"]
    os.kill(pid, signal.SIGKILL)

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (job := service.job(job_id)).status not in ("failed", "completed"):
        time.sleep(0.5)
    assert job.status == "failed", job
    assert job.error and job_id in job.error and f"the warm worker running it (pid {pid}) died" in job.error, job.error

    # the next small job completes at once (on the cluster path while the worker restarts) ...
    after = _train(settings, request_body(customer_features, n_ids=20))
    assert after.execution["path"] in ("warm", "cluster") and after.training_rows > 0
    # ... and the worker comes back: a new process, ready, taking small jobs again
    restarted = _warm_workers(settings)
    assert any(w["ready"] and w["pid"] not in (None, pid) and not w["broken"] for w in restarted), restarted
    assert _train(settings, request_body(customer_features, n_ids=20)).execution["path"] == "warm"


def test_a_warm_worker_that_died_idle_costs_the_next_small_job_nothing(settings: Settings, customer_features: str) -> None:
    """A warm worker killed between jobs: the next small job still completes (the supervisor pings the
    worker before it sends a job; before, the job went to the restarting actor and failed unrun)."""
    workers = _warm_workers(settings)
    pid = next(w["pid"] for w in workers if w["ready"] and w["job_id"] is None)
    os.kill(pid, signal.SIGKILL)
    time.sleep(1)
    after = _train(settings, request_body(customer_features, n_ids=20))
    assert after.status == "completed" and after.training_rows > 0 and after.execution["path"] in ("warm", "cluster")
    restarted = _warm_workers(settings)
    assert any(w["ready"] and w["pid"] not in (None, pid) for w in restarted), restarted


def test_warm_worker_rehearsal_runs_with_no_server_and_leaves_no_files(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rehearsal (fit, figures, a model saved as ``log_model`` saves it) runs offline and cleans up.

    It is wrapped so that a failure never keeps a warm worker from serving; this is what notices one.
    A tracking URI where nothing listens would fail any call the rehearsal made to a server.
    """
    import tempfile

    from asgard_ray.training.service import rehearse

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    rehearse()
    assert list(tmp_path.iterdir()) == []
