"""Training as a job kind: ``POST /mlops/models``, ``jobs/train.py`` and ``GET /mlops/jobs/{id}``.

``TRAINING_JOB`` declares how a ``TrainRequest`` is prepared (validation and the trial plan, on
the caller: fast 4xx), run (``run_training`` in the Ray task ``training:<job_id>``, owned by the
jobs supervisor) and viewed (``TrainingJob``). Training is not idempotent (it creates MLflow runs),
so a crashed task is never retried: the job fails with its cause and may be sent again.
"""

from __future__ import annotations

import logging
from typing import Any

from asgard_ray.config import Settings
from asgard_ray.jobs import (
    JobKind,
    JobRecord,
    Plan,
    error_from_record,
    get_job_sync,
    register_kind,
    start_job_sync,
    wait_job_sync,
)
from asgard_ray.training.schemas import TrainingJob, TrainRequest, TrainResponse

__all__ = ["PRELOAD", "TRAINING_JOB", "TrainingService", "job_view", "rehearse", "train_answer"]

log = logging.getLogger(__name__)


def job_view(record: JobRecord) -> TrainingJob:
    """A job record as ``GET /mlops/jobs/{id}`` shows it (any kind; trial fields for training)."""
    progress = record.progress
    return TrainingJob(
        job_id=record.job_id,
        kind=record.kind,
        status=record.status,
        created_at=record.created_at,
        updated_at=record.updated_at,
        queue_position=progress.get("queue_position") if record.status == "queued" else None,
        trials_total=progress.get("trials_total"),
        trials_done=int(progress.get("trials_done") or 0),
        trials_failed=int(progress.get("trials_failed") or 0),
        metric=progress.get("metric"),
        best_metric=progress.get("best_metric"),
        run_id=progress.get("run_id") or (record.result or {}).get("run_id"),
        error=record.error,
        result=record.result,
        links={**record.links, **({"ray_task": record.ray_task_name} if record.ray_task_name else {})},
    )


def train_answer(record: JobRecord) -> TrainResponse | TrainingJob:
    """The answer to a train request: the result when completed, the job while it runs.

    Raises:
        AsgardError: The job failed or was cancelled: its own domain error, else ``JobFailed`` (500 with its cause).
    """
    if record.status == "completed" and record.result:
        return TrainResponse.model_validate(record.result)
    if record.status in ("failed", "cancelled"):
        raise error_from_record(record)
    return job_view(record)


def _prepare(request: TrainRequest, settings: Settings, job_id: str) -> Plan:
    from asgard_ray.features.retrieval import describe_views
    from asgard_ray.runtime import check_fits, connect
    from asgard_ray.training.modes import choose_mode, fast_path
    from asgard_ray.training.plan import plan_trials, validate_request
    from asgard_ray.training.target import check_target

    validate_request(request, settings)
    mode = choose_mode(request, settings)
    if mode.mode == "distributed":  # a gang that could never be placed is refused now, not left waiting
        connect(settings)
        cpus = settings.asgard_train_cpus_per_worker
        check_fits(
            settings,
            [cpus] * mode.num_workers,
            f"{mode.num_workers} data-parallel workers x {cpus:g} CPU",
            "execution.num_workers (default ASGARD_TRAIN_DEFAULT_WORKERS) or ASGARD_TRAIN_CPUS_PER_WORKER",
        )
    # the gold snapshots are pinned here, at submission, on the caller: a pin of a table the views do not
    # read (422) or of no snapshot (404) is refused before any job, and the job (and a retry of it) reads
    # the snapshots that were current when it was accepted, not when a worker got to it
    reads = describe_views(settings, request.data_source.feature_views, request.as_of_snapshot)
    check_target(request.data_source.target_column, request.model_type, reads)
    total = len(plan_trials(request)[0])
    body = request.model_dump(mode="json", by_alias=True)
    tables = {r.table_name: r.table for r in reads if r.table is not None}
    pinned = {name: t.snapshot_id for name, t in tables.items() if t.snapshot_id is not None}
    warm, why = fast_path(request, settings)
    return Plan(
        job_id=job_id,
        settings=settings,
        payload={**body, "as_of_snapshot": pinned or None},
        request=body,
        progress={"trials_total": total, "trials_done": 0, "fast_path": why},
        links={"dashboard": settings.dashboard_url},
        wait=not request.async_,
        warm=warm,
    )


def _run(plan: Plan) -> dict[str, Any]:
    from asgard_ray.training.pipeline import run_training

    return run_training(plan.settings, plan.payload, plan.job_id, path=plan.path)


PRELOAD = (
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
    "asgard_ray.features.retrieval",
    "skops.io",
    "feast",
    "mlflow.tracking.request_header.registry",
)
"""What a small training job imports. The last three are imported lazily on a job's path: skops by the
first model logged, Feast by the first feature-view lookup, MLflow's request-header plugins (Feast is
one) by the first REST call; left to the first job they cost it 4-5 s (``py-spy`` on a fresh warm worker)."""


def rehearse() -> None:
    """Run once, with no server, what a first small training job would otherwise run for the first time.

    Fit a tiny model, draw and render its figures, and save it as ``log_model`` would (skops, the
    signature, the serving-input check that loads the model back and predicts), so the first small job
    after a (re)start costs about what the next ones do.
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


TRAINING_JOB = register_kind(
    JobKind(
        name="training",
        id_prefix="train",
        prepare=_prepare,
        run=_run,
        view=job_view,
        wait_s=3600.0,
        preload=PRELOAD,
        rehearse=rehearse,
    )
)


class TrainingService:
    """Sync façade over the jobs core for library callers and tests."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def start(self, request: TrainRequest) -> JobRecord:
        """Validate the request and start (or queue) its job; return its record."""
        return start_job_sync(TRAINING_JOB, request, self.settings).record

    def train(self, request: TrainRequest) -> TrainResponse | TrainingJob:
        """Train; wait for the result unless the request is async (then return the pending job)."""
        started = start_job_sync(TRAINING_JOB, request, self.settings)
        record = wait_job_sync(started, self.settings) if started.wait else started.record
        return train_answer(record)

    def job(self, job_id: str) -> TrainingJob:
        """A job's status (any kind)."""
        return job_view(get_job_sync(self.settings, job_id))
