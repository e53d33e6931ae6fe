"""Warm workers: the small-work fast path of the jobs core.

The seed's requests are small (5 entities to train on, 10 rows to score). On the cluster path each
one pays fixed costs that dwarf the work: a task on a worker that may first import MLflow and the
frameworks, Tune's start-up, a refit task, Ray Data's planning and its read, score and write tasks.
A warm worker is an actor the job supervisor starts once and keeps: it imported everything at start,
and runs a small job's whole body in its own process (the platform's as-of join, the fits one after
another, predict, one Parquet file). Same code, same results (``tests/integration/test_fast_path.py``).

Rules:

- The supervisor owns its warm workers (they die and restart with it) and gives each one job at a
  time; a small job that finds them all busy, or not ready yet, runs on the cluster path.
- A warm worker asks for no CPU: small work is short, and a reserved CPU would take a slot from the
  Tune trials and Ray Data tasks of large jobs on a small cluster.
- A crashed warm worker fails its job with the cause, like a crashed task (the kind's retries are for
  the cluster path), and restarts; the next small job waits for its imports.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import time
from typing import Any, Final

from asgard_ray.heap import freeze_startup_heap
from asgard_ray.jobs.kinds import Plan

__all__ = ["PRELOAD", "WarmWorker"]

log = logging.getLogger(__name__)

PRELOAD: Final = (
    "numpy",
    "pandas",
    "pyarrow.parquet",
    "pyarrow.dataset",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "sklearn.metrics",
    "xgboost",
    "lightgbm",
    "mlflow",
    "mlflow.sklearn",
    "mlflow.xgboost",
    "mlflow.lightgbm",
    "matplotlib.pyplot",
    "pyiceberg.table",
    "pyiceberg.io.pyarrow",
    "asgard_ray.training.pipeline",
    "asgard_ray.scoring.runner",
    "asgard_ray.scoring.pipeline",
    "asgard_ray.features.retrieval",
    "asgard_ray.monitoring.profile",
    "skops.io",
    "feast",
    "mlflow.tracking.request_header.registry",
)
"""Modules a warm worker imports at start (what a small training or scoring job would import).

The last three are imported lazily on a job's path: skops by the first model logged, Feast by the
first feature-view lookup, and MLflow's request-header plugins (Feast is one) by the first REST call.
Left to the first job they cost it 4-5 s (``py-spy`` on a fresh warm worker).
"""


def rehearse() -> None:
    """Run once, with no server, what a first job would otherwise run for the first time.

    Fit a tiny model, draw and render its figures, and save it as ``log_model`` would (skops, the
    signature, the serving-input check that loads the model back and predicts): the first small job
    after a (re)start costs about what the next ones do (measured: 8.8 s -> 1.9 s, then 1.5 s; README).
    """
    import io
    import tempfile
    import warnings

    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd
    from sklearn.ensemble import RandomForestClassifier

    from asgard_ray.training.estimators import save_model
    from asgard_ray.training.metrics import predict_rows
    from asgard_ray.training.plots import model_figures
    from asgard_ray.training.tracking import typed_signature

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.normal(size=40), "n": rng.integers(0, 5, size=40)})
    y = (X["x"] > 0).to_numpy().astype("int64")
    model = RandomForestClassifier(n_estimators=3, max_depth=2, random_state=0).fit(X, y)
    pred, proba = predict_rows(model, X, "classification")
    score = None if proba is None else proba[:, 1]
    for figure in model_figures(model, X, y, "classification", list(X.columns), [0, 1], score, y_pred=pred).values():
        figure.savefig(io.BytesIO(), format="png")
        plt.close(figure)
    with warnings.catch_warnings(), tempfile.TemporaryDirectory(prefix="asgard-warm-") as tmp:
        warnings.simplefilter("ignore")  # MLflow's hint on integer columns in the signature
        example, signature = typed_signature(model, X.head(5), {"x": "float64", "n": "int64"})
        save_model("sklearn", model, f"{tmp}/model", signature, example)


class WarmWorker:
    """One warm worker (wrapped with ``ray.remote`` by the supervisor)."""

    def __init__(self) -> None:
        os.environ.setdefault("MPLBACKEND", "Agg")
        t = time.perf_counter()
        for name in PRELOAD:
            importlib.import_module(name)
        try:
            rehearse()
        except Exception:  # a rehearsal must never keep the worker from serving: the first job pays instead
            log.exception("warm worker rehearsal failed")
        freeze_startup_heap("warm worker")
        self.started_s = round(time.perf_counter() - t, 3)
        self.jobs = 0
        log.info("warm worker up in %.1fs (pid %d)", self.started_s, os.getpid())

    def ready(self) -> dict[str, Any]:
        """Answer once the imports are done: the start time and the jobs run so far."""
        return {"pid": os.getpid(), "started_s": self.started_s, "jobs": self.jobs}

    def execute(self, kind_name: str, plan: Plan) -> dict[str, Any]:
        """Run a job's body here, as the task ``<kind>:<job_id>`` would (``supervisor.execute``)."""
        from asgard_ray.jobs.supervisor import execute

        self.jobs += 1
        return execute(kind_name, dataclasses.replace(plan, path="warm"))
