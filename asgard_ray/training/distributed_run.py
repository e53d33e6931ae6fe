"""One data-parallel training request, end to end: Ray Data training set -> Ray Train trials -> best booster -> MLflow.

The counterpart of ``pipeline.train_on_frame`` for ``ExecutionPlan.mode == "distributed"``; it uses
the same validation, trial plan, selection metric, lineage tags, MLflow parent and child runs
(``TrialRunLogger``), job progress, figures, ``log_model`` and response. What differs is where the
rows live: the job's process never holds the training set. It holds the best trial's booster,
bounded samples for the plots and the signature (``FIGURE_ROWS``), and the profile partials.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import pandas as pd

from asgard_ray import lineage
from asgard_ray.config import Settings
from asgard_ray.jobs import JobStore
from asgard_ray.training.dataset import LABEL, ShardedData, build_training_dataset, profile_dataset, sample_frame
from asgard_ray.training.distributed import (
    cleanup,
    load_trial_model,
    predictions,
    run_dp_trials,
    worker_markers,
    wrap_booster,
)
from asgard_ray.training.metrics import positive_score, predict_rows
from asgard_ray.training.modes import ExecutionPlan
from asgard_ray.training.pipeline import _lineage_tags, execution_tags, plan_trials, selection_metric, validate_request
from asgard_ray.training.plots import model_figures
from asgard_ray.training.schemas import TrainingMetrics, TrainRequest, TrainResponse
from asgard_ray.training.tracking import JobProgress, TrialRunLogger, Winner, ensure_experiment, log_winner, mlflow_client, run_url
from asgard_ray.training.trials import TrialSpec

__all__ = ["FIGURE_ROWS", "train_distributed"]

log = logging.getLogger(__name__)

FIGURE_ROWS = 20_000
"""Validation rows (a seeded sample) behind the plots; metrics and profiles use every row."""


def _score_and_label(batch: pd.DataFrame, *, classes: list[Any] | None, n_classes: int | None) -> pd.DataFrame:
    """Predictions as the reference profile keeps them: one score per row and the (decoded) label."""
    if classes is not None:
        proba = batch[[c for c in batch.columns if c.startswith("__p")]].to_numpy()
        label = np.asarray(classes, dtype=object)[batch[LABEL].to_numpy().astype(int)]
        return pd.DataFrame(
            {"prediction": positive_score(proba, n_classes or 2), "label": pd.to_numeric(pd.Series(label), errors="coerce")}
        )
    return pd.DataFrame({"prediction": batch["__pred"].to_numpy(), "label": batch[LABEL].to_numpy()})


def _profile(data: ShardedData, spec: TrialSpec, raw: bytes) -> dict[str, Any]:
    """``build_reference_profile``'s shape, computed on the datasets (exact counts, sampled bin edges)."""
    features = profile_dataset(data.train, data.feature_columns, data.train_rows)
    scored = predictions(data.eval_ds, spec.framework, spec.model_type, raw, spec.n_classes, data.feature_columns)
    scored = scored.map_batches(
        _score_and_label,  # type: ignore[arg-type]  # Ray stubs cannot type fn_kwargs functions
        batch_format="pandas",
        fn_kwargs={"classes": data.classes, "n_classes": spec.n_classes},
    ).materialize()
    eval_rows = data.val_rows if data.has_validation else data.train_rows
    tail = profile_dataset(scored, ["prediction", "label"], eval_rows)
    from asgard_ray.monitoring.profile import PROFILE_VERSION

    return {
        "version": PROFILE_VERSION,
        "n_rows": data.train_rows,
        "feature_columns": list(data.feature_columns),
        "dtypes": {c: "float64" for c in data.feature_columns},
        "features": features,
        "prediction": tail["prediction"],
        "label": tail["label"],
    }


def train_distributed(settings: Settings, request: TrainRequest, job_id: str, plan: ExecutionPlan) -> dict[str, Any]:
    """Train data-parallel as the request asks and return the ``TrainResponse`` as a dict (the job's result)."""
    fixed, warnings = validate_request(request, settings)
    num_samples, total, plan_warnings = plan_trials(request)
    warnings += plan_warnings
    data = build_training_dataset(settings, request)
    warnings += data.warnings
    metric, mode, metric_warnings = selection_metric(request, data)  # type: ignore[arg-type]
    warnings += metric_warnings
    spec = TrialSpec(request.framework, request.model_type, request.estimator, fixed, metric, mode, data.n_classes)
    execution = {**plan.describe(), "path": "cluster"}
    client = mlflow_client(settings)
    experiment_id = ensure_experiment(settings, request.experiment_name)
    tags = {
        **request.tags,
        **_lineage_tags(request, data.meta, data, training_rows=data.train_rows),
        "asgard.job_id": job_id,
        "asgard.model_name": request.model_name,
        "mlflow.runName": f"{request.model_name}-{job_id}",
        **execution_tags(execution),
    }
    run_id = client.create_run(experiment_id, tags=tags).info.run_id
    JobStore(settings).update(
        "training",
        job_id,
        progress={"run_id": run_id, "experiment_id": experiment_id, "trials_total": total, "metric": metric},
        links={
            "dashboard": settings.dashboard_url,
            "mlflow_run": run_url(settings, experiment_id, run_id),
            "mlflow_experiment": run_url(settings, experiment_id),
        },
    )
    log.info(
        "job %s: parent run %s, %d data-parallel trial(s) x %d workers of %s/%s on %d rows",
        job_id,
        run_id,
        total,
        plan.num_workers,
        request.framework,
        request.model_type,
        data.train_rows,
    )
    try:
        return _train_and_log(settings, request, job_id, data, spec, plan, num_samples, total, experiment_id, run_id, warnings, execution)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    finally:
        cleanup(settings, job_id)


def _train_and_log(
    settings: Settings,
    request: TrainRequest,
    job_id: str,
    data: ShardedData,
    spec: TrialSpec,
    plan: ExecutionPlan,
    num_samples: int,
    total: int,
    experiment_id: str,
    run_id: str,
    warnings: list[str],
    execution: dict[str, Any],
) -> dict[str, Any]:
    from mlflow.models import infer_signature

    hp = request.hyperparameters
    callbacks = [
        TrialRunLogger(settings, experiment_id, run_id, spec.fixed_params),
        JobProgress(settings, job_id, spec.metric, spec.mode, total),
    ]
    outcome = run_dp_trials(
        data,
        spec,
        hp.search_space,
        job_id=job_id,
        num_workers=plan.num_workers,
        num_samples=num_samples,
        max_concurrent_trials=hp.max_concurrent_trials,
        callbacks=callbacks,
    )
    best = outcome.winner(warnings)
    best_params = {**spec.fixed_params, **best.config}
    raw = load_trial_model(settings, job_id, best.trial_id)  # reused, not refit: the trial's booster
    model = wrap_booster(spec.framework, spec.model_type, raw, spec.n_classes)
    metrics = {k: v for k, v in best.metrics.items() if k != "num_workers"}
    workers = worker_markers(settings, job_id, best.trial_id)
    execution = {
        **execution,
        "worker_nodes": [w["node_id"] for w in workers],
        "worker_rows": [w["rows"] for w in workers],
        "resumed_from_round": max((w["resumed_from"] for w in workers), default=0),
    }

    run_tags = {
        "asgard.num_trials": len(outcome.trials),
        "asgard.failed_trials": len(outcome.failed),
        "asgard.best_trial_id": best.trial_id,
        "asgard.selection_metric": spec.metric,
        "asgard.split": data.split,
        "asgard.validation_rows": data.val_rows,
        "asgard.warnings": json.dumps(warnings),
        **execution_tags(execution),
    }
    sample = sample_frame(data.eval_ds, data.val_rows if data.has_validation else data.train_rows, FIGURE_ROWS, seed=0)
    X_eval, y_eval = sample[data.feature_columns].astype("float64"), sample[LABEL].to_numpy()
    eval_pred, eval_proba = predict_rows(model, X_eval, spec.model_type)  # one pass, for the score and the plots
    score = positive_score(eval_proba, spec.n_classes or 2) if eval_proba is not None else np.asarray(eval_pred, dtype="float64")
    example = X_eval.head(5)

    def artifacts(client: Any) -> None:
        figures = model_figures(model, X_eval, y_eval, spec.model_type, data.feature_columns, data.classes, score, y_pred=eval_pred)
        for path, figure in figures.items():
            client.log_figure(run_id, figure, path)
        client.log_dict(run_id, _profile(data, spec, raw), lineage.PROFILE_ARTIFACT)

    winner = Winner(request.framework, model, metrics, best_params, run_tags, example, infer_signature(example, model.predict(example)))
    logged_uri, artifact_uri = log_winner(settings, run_id, experiment_id, winner, artifacts, thread_name=f"{job_id}-artifacts")
    response = TrainResponse(
        run_id=run_id,
        experiment_id=experiment_id,
        model_name=request.model_name,
        model_uri=f"runs:/{run_id}/{lineage.MODEL_ARTIFACT}",
        logged_model_uri=logged_uri,
        metrics=TrainingMetrics(metrics=metrics),
        artifact_uri=artifact_uri,
        job_id=job_id,
        num_trials=len(outcome.trials),
        failed_trials=len(outcome.failed),
        best_params=best_params,
        metric=spec.metric,
        training_rows=data.train_rows,
        validation_rows=data.val_rows,
        feature_columns=data.feature_columns,
        mlflow_run_url=run_url(settings, experiment_id, run_id),
        warnings=warnings,
        execution=execution,
        feature_snapshots=dict(data.meta.snapshots),
    )
    log.info(
        "job %s: data-parallel run %s finished on %d workers, %s=%s",
        job_id,
        run_id,
        plan.num_workers,
        spec.metric,
        metrics.get(spec.metric),
    )
    return response.model_dump(mode="json")
