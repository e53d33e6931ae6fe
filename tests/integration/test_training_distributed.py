"""Data-parallel training (Ray Train XGBoostTrainer / LightGBMTrainer on Ray Data shards) on the session's Ray.

The session Ray has 2 CPUs: each of the 2 Ray Train workers reserves half a CPU
(``ASGARD_TRAIN_CPUS_PER_WORKER=0.5``), the trial itself none, so Ray Data's tasks keep a free slot.
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
    return settings.model_copy(update={"asgard_train_cpus_per_worker": 0.5, "asgard_train_checkpoint_rounds": 10})


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
    prof = json.loads(open(profile).read())
    assert prof["n_rows"] == 150 and set(prof["features"]) == set(dp.feature_columns)
    assert all(sum(p["counts"]) + p["missing"] == 150 for p in prof["features"].values())
