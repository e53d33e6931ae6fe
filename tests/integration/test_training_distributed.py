"""Data-parallel training (gang-scheduled workers with XGBoost's collective / LightGBM's data_parallel) on the session's Ray.

The session Ray has 2 CPUs: the 2 workers reserve one CPU each (the defaults), and the job task none.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from typing import Any

import mlflow
import numpy as np
import pytest

from asgard_ray.config import Settings
from asgard_ray.jobs import JobStore, new_job_id
from asgard_ray.training.pipeline import run_training
from asgard_ray.training.schemas import TrainResponse
from tests.integration.test_training import child_runs, request_body

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dp_settings(settings: Settings) -> Settings:
    """Settings sized for the 2-CPU session Ray."""
    return settings.model_copy(update={"asgard_train_cpus_per_worker": 1.0, "asgard_train_checkpoint_s": 0.5})


def run(settings: Settings, body: dict[str, Any]) -> TrainResponse:
    job_id = new_job_id("train")
    JobStore(settings).create("training", job_id)
    return TrainResponse.model_validate(run_training(settings, body, job_id))


def body_for(customer_features: str, framework: str, mode: str, **hp: Any) -> dict[str, Any]:
    params = {"n_estimators": 30, "max_depth": 3, "learning_rate": 0.2, **hp}
    return request_body(customer_features, framework=framework, model_name=f"it_dp_{framework}",
                        split={"strategy": "time", "validation_fraction": 0.5},
                        hyperparameters={"params": params, "metric": "roc_auc"},
                        execution={"mode": mode} | ({"num_workers": 2} if mode == "distributed" else {}))


@pytest.mark.parametrize("framework", ["xgboost", "lightgbm"])
def test_data_parallel_matches_in_memory(dp_settings: Settings, customer_features: str, framework: str) -> None:
    extra = {"min_child_samples": 5} if framework == "lightgbm" else {}
    dp = run(dp_settings, body_for(customer_features, framework, "distributed", **extra))
    mem = run(dp_settings, body_for(customer_features, framework, "in_memory", **extra))

    assert dp.execution["mode"] == "distributed" and dp.execution["num_workers"] == 2
    assert mem.execution["mode"] == "in_memory"
    assert len(dp.execution["worker_rows"]) == 2 and sum(dp.execution["worker_rows"]) == dp.training_rows
    assert dp.training_rows == mem.training_rows == 150 and dp.validation_rows == mem.validation_rows == 150
    for name in ("roc_auc", "accuracy", "log_loss"):
        assert abs(dp.metrics.metrics[name] - mem.metrics.metrics[name]) <= 0.1, (name, dp.metrics, mem.metrics)

    client = mlflow.MlflowClient(tracking_uri=dp_settings.tracking_uri)
    parent = client.get_run(dp.run_id)
    assert parent.data.tags["asgard.execution_mode"] == "distributed" and parent.data.tags["asgard.num_workers"] == "2"
    assert parent.info.status == "FINISHED"
    children = child_runs(dp_settings, dp)
    assert len(children) == 1 and children[0].info.status == "FINISHED" and "roc_auc" in children[0].data.metrics

    model = getattr(mlflow, framework).load_model(dp.model_uri)
    X = np.random.default_rng(0).normal(size=(4, len(dp.feature_columns)))
    import pandas as pd

    proba = model.predict_proba(pd.DataFrame(X, columns=dp.feature_columns))
    assert proba.shape == (4, 2) and np.allclose(proba.sum(axis=1), 1)
    profile = client.download_artifacts(dp.run_id, "reference_profile.json")
    with open(profile) as f:
        prof = json.load(f)
    assert prof["n_rows"] == 150 and set(prof["features"]) == set(dp.feature_columns)
    assert all(sum(p["counts"]) + p["missing"] == 150 for p in prof["features"].values())


def test_killed_worker_resumes_from_its_checkpoint_or_fails_cleanly(dp_settings: Settings, customer_features: str) -> None:
    """SIGKILL one worker after the trial's first checkpoint; the gang starts again from it."""
    import pyarrow.fs as pafs

    from asgard_ray.storage import resolve

    settings = dp_settings.model_copy(update={"asgard_train_checkpoint_s": 0.5, "asgard_train_max_failures": 2})
    body = body_for(customer_features, "xgboost", "distributed", n_estimators=4000, learning_rate=0.01, max_depth=6)
    job_id = new_job_id("train")
    JobStore(settings).create("training", job_id)
    outcome: dict[str, Any] = {}

    def train() -> None:
        try:
            outcome["result"] = TrainResponse.model_validate(run_training(settings, body, job_id))
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=train, daemon=True)
    thread.start()
    fs, base = resolve(settings, settings.state_uri("training", "runs", job_id))
    killed: int | None = None
    deadline = time.monotonic() + 240
    while killed is None and thread.is_alive() and time.monotonic() < deadline:
        files = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
        has_checkpoint = any(f.is_file and "/checkpoints/" in f.path for f in files)
        markers = [f.path for f in files if f.is_file and "/workers/" in f.path and f.path.endswith("/1.json")]
        if has_checkpoint and markers:
            with fs.open_input_file(markers[0]) as f:
                killed = json.loads(f.read())["pid"]
            os.kill(killed, signal.SIGKILL)
            break
        time.sleep(0.2)
    thread.join(timeout=300)
    assert not thread.is_alive(), "training did not end after the worker was killed"
    assert killed is not None, f"no checkpoint and worker marker seen before training ended: {outcome}"
    if "result" in outcome:
        result: TrainResponse = outcome["result"]
        assert result.execution["resumed_from_round"] > 0  # the new gang started from the checkpoint
        assert "roc_auc" in result.metrics.metrics
    else:  # failing is allowed, but cleanly: the parent run is FAILED and the error says why
        client = mlflow.MlflowClient(tracking_uri=settings.tracking_uri)
        runs = client.search_runs(client.get_experiment_by_name("it_training").experiment_id,
                                  filter_string=f"tags.`asgard.job_id` = '{job_id}'")
        assert runs and runs[0].info.status == "FAILED", outcome


def test_a_job_that_waits_past_the_pending_bound_fails_with_its_cause_and_frees_its_slot(dp_settings: Settings, customer_features: str) -> None:
    """One of the 2 CPUs held by another placement group: the 2-worker job waits its bound, then fails saying why."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    from asgard_ray.jobs import get_job_sync, supervisor_info, run_sync
    from asgard_ray.training import TrainingService, TrainRequest

    settings = dp_settings.model_copy(update={"asgard_job_pending_timeout_s": 3.0, "asgard_fast_path_rows": 0})
    hog = placement_group([{"CPU": 1.0}])  # Ray Data's preparation still has a CPU; the 2 x 1 CPU workers never fit
    ray.get(hog.ready(), timeout=60)
    try:
        request = TrainRequest.model_validate({**body_for(customer_features, "xgboost", "distributed"), "async": True})
        record = TrainingService(settings).start(request)
        deadline = time.monotonic() + 120
        while (job := get_job_sync(settings, record.job_id, "training")).status not in ("failed", "completed") and time.monotonic() < deadline:
            time.sleep(0.5)
        assert job.status == "failed", job
        assert "waited" in (job.error or "") and "CPU" in (job.error or "") and job.error_type == "ResourcesUnavailable", job.error
        assert record.job_id not in run_sync(supervisor_info(settings))["job_ids"]  # its slot is free again
    finally:
        remove_placement_group(hog)
