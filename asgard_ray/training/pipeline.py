"""One training request, end to end: point-in-time frame -> split -> Tune trials -> refit best -> MLflow.

``run_training`` is the body of the Ray task ``training:<job_id>`` (see ``asgard_ray.jobs.submit``).
It asks for no CPU itself: the trials and the refit ask for one each. The frame's gold tables are
pinned once at the start (the current snapshot, or the request's ``as_of_snapshot``); the parent
run records each pin as ``asgard.gold.<table>.snapshot_id``, and the answer as ``feature_snapshots``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np

from asgard_ray import lineage
from asgard_ray.config import Settings
from asgard_ray.errors import InvalidRequest
from asgard_ray.features import TrainingFrame, build_training_frame
from asgard_ray.jobs import JobStore
from asgard_ray.jobs.kinds import ExecutionPath
from asgard_ray.training.data import PreparedData, entity_hash, prepare_data
from asgard_ray.training.estimators import check_param_bounds, resolve_params
from asgard_ray.training.metrics import evaluate, positive_score, predict_rows
from asgard_ray.training.modes import ExecutionPlan, choose_mode, sample_entities
from asgard_ray.training.plots import model_figures
from asgard_ray.training.schemas import (
    CLASSIFICATION_METRICS,
    REGRESSION_METRICS,
    TrainingMetrics,
    TrainRequest,
    TrainResponse,
    metric_mode,
)
from asgard_ray.training.tracking import (
    JobProgress,
    TrialRunLogger,
    Winner,
    ensure_experiment,
    git_commit,
    log_winner,
    mlflow_client,
    run_url,
    typed_signature,
)
from asgard_ray.training.trials import (
    DEFAULT_NUM_TRIALS,
    TrialSpec,
    check_trial_cap,
    fit_and_score,
    param_space,
    run_trials,
    run_trials_inline,
)

__all__ = ["execution_tags", "plan_trials", "run_training", "selection_metric", "train_on_frame", "validate_request"]

log = logging.getLogger(__name__)


def validate_request(request: TrainRequest, settings: Settings | None = None) -> tuple[dict[str, Any], list[str]]:
    """Check what can be checked without data: estimator, parameter names and bounds, trial cap, metric.

    Without ``settings`` the work limits take their defaults (``Settings`` field defaults).
    """
    hp = request.hyperparameters
    limits = settings or Settings.model_construct()
    check_trial_cap(hp.search_space, hp.num_trials, limits)
    check_param_bounds(request.framework, hp.params, hp.search_space, limits)
    fixed, warnings = resolve_params(request.framework, request.model_type, request.estimator, hp.params, list(hp.search_space or {}))
    choose_mode(request, limits)  # sklearn past the in-memory limit, workers over the cap: 422 before any job
    allowed = CLASSIFICATION_METRICS if request.model_type == "classification" else REGRESSION_METRICS
    if hp.metric is not None and hp.metric.removeprefix("train_") not in allowed:
        raise InvalidRequest(f"unknown metric {hp.metric!r} for {request.model_type}; use one of {', '.join(allowed)}")
    return fixed, warnings


def plan_trials(request: TrainRequest) -> tuple[int, int, list[str]]:
    """Tune's ``num_samples``, the total trial count and warnings about ignored settings."""
    hp = request.hyperparameters
    space, sampled = param_space(hp.search_space)
    grid = 1
    for dim in (hp.search_space or {}).values():
        if dim.type == "grid":
            grid *= len(dim.values or [])
    warnings: list[str] = []
    if sampled:
        samples = hp.num_trials or DEFAULT_NUM_TRIALS
    else:
        samples = 1
        if hp.num_trials and hp.num_trials > 1:
            reason = "a grid runs each combination once" if space else "there is no search_space"
            warnings.append(f"num_trials={hp.num_trials} ignored: {reason}")
    return samples, samples * grid, warnings


def selection_metric(request: TrainRequest, data: PreparedData) -> tuple[str, str, list[str]]:
    """The metric (and mode) that ranks trials, adjusted to what the data can measure."""
    hp = request.hyperparameters
    warnings: list[str] = []
    metric = (hp.metric or ("roc_auc" if request.model_type == "classification" else "rmse")).removeprefix("train_")
    _, y_eval = data.eval_set
    if metric == "roc_auc" and len(np.unique(y_eval)) < 2:
        fallback = "accuracy"
        if hp.metric:
            warnings.append(f"roc_auc is undefined with one class in the evaluation rows; ranked trials by {fallback}")
        metric = fallback
    if metric == "log_loss" and data.classes is not None and len(data.classes) < 2:
        warnings.append("log_loss is undefined with one class; ranked trials by accuracy")
        metric = "accuracy"
    mode = hp.mode or metric_mode(metric)
    return (metric if data.has_validation else f"train_{metric}"), mode, warnings


def execution_tags(execution: dict[str, Any]) -> dict[str, str]:
    """Parent-run tags that say which mode and path ran, with how many workers, and on what sample."""
    tags = {
        "asgard.execution_mode": str(execution["mode"]),
        "asgard.execution_path": str(execution.get("path", "cluster")),
        "asgard.num_workers": str(execution.get("num_workers", 1)),
        "asgard.execution": json.dumps(execution, default=str),
    }
    if execution.get("sample_rows"):
        tags.update({"asgard.sample_rows": str(execution["sample_rows"]), "asgard.sampled_from_rows": str(execution["rows"])})
    return tags


def _refit(spec: TrialSpec, data: PreparedData, params: dict[str, Any]) -> Any:
    """Fit the best configuration again (trials keep no checkpoints); deterministic with random_state."""
    model, _ = fit_and_score(spec, data, params)
    return model


def _lineage_tags(request: TrainRequest, frame: Any, data: Any, training_rows: int | None = None) -> dict[str, str]:
    """The lineage tags of a parent run; ``data`` is ``PreparedData`` or, with ``training_rows``, ``ShardedData``."""
    tags = {
        lineage.TAG_FEATURE_COLUMNS: json.dumps(list(frame.feature_columns)),
        lineage.TAG_FEATURE_VIEWS: json.dumps(list(frame.feature_views)),
        lineage.TAG_FEAST_REGISTRY_VERSION: str(frame.registry_version or ""),
        lineage.TAG_JOIN_KEYS: json.dumps(list(frame.join_keys)),
        lineage.TAG_LABEL: str(frame.label),
        lineage.TAG_FRAMEWORK: request.framework,
        lineage.TAG_MODEL_TYPE: request.model_type,
        lineage.TAG_TRAINING_ROWS: str(len(data.X_train) if training_rows is None else training_rows),
        lineage.TAG_ENTITY_HASH: entity_hash(frame),
        **lineage.gold_snapshot_tags(frame.snapshots),
    }
    if data.classes is not None:
        tags[lineage.TAG_CLASSES] = json.dumps([c.item() if hasattr(c, "item") else c for c in data.classes])
    commit = git_commit()
    if commit:
        tags[lineage.TAG_GIT_COMMIT] = commit
    return tags


def run_training(settings: Settings, request_json: dict[str, Any], job_id: str, path: ExecutionPath = "cluster") -> dict[str, Any]:
    """Train as the request asks and return the ``TrainResponse`` as a dict (the Ray task's result).

    ``path`` is where the job runs (``Plan.path``): ``cluster`` runs the trials on Tune and refits the
    best on its own task; ``warm`` (a warm worker, small work only) runs them one after another in this
    process and keeps the best trial's model. Same fits, same seeds: the same model either way.
    """
    request = TrainRequest.model_validate(request_json)
    validate_request(request, settings)
    plan = choose_mode(request, settings)
    log.info("job %s: %s mode (%s)", job_id, plan.mode, plan.reason)
    if plan.mode == "distributed":
        from asgard_ray.training.distributed_run import train_distributed

        return train_distributed(settings, request, job_id, plan)
    ds = request.data_source
    entities, timestamps = sample_entities(request, plan)
    # the gold tables are pinned once, here: the frame holds exactly those snapshots (frame.snapshots)
    frame = build_training_frame(
        settings, ds.feature_views, entities, event_timestamps=timestamps, label=ds.target_column, as_of_snapshot=request.as_of_snapshot
    )
    return train_on_frame(settings, request, frame, job_id, plan, path=path)


def train_on_frame(
    settings: Settings,
    request: TrainRequest,
    frame: TrainingFrame,
    job_id: str,
    plan: ExecutionPlan | None = None,
    *,
    path: ExecutionPath = "cluster",
) -> dict[str, Any]:
    """Train on an already retrieved frame (``run_training`` after retrieval), in memory.

    The job record ``job_id`` must exist (``JobStore.create``); its progress is updated as trials end.
    """
    fixed, warnings = validate_request(request, settings)
    num_samples, total, plan_warnings = plan_trials(request)
    warnings += plan_warnings
    data = prepare_data(frame, request.model_type, request.split, settings.asgard_max_classes)
    warnings += data.warnings
    metric, mode, metric_warnings = selection_metric(request, data)
    warnings += metric_warnings
    spec = TrialSpec(
        request.framework,
        request.model_type,
        request.estimator,
        fixed,
        metric,
        mode,
        len(data.classes) if data.classes is not None else None,
    )

    client = mlflow_client(settings)
    experiment_id = ensure_experiment(settings, request.experiment_name)
    plan = plan or ExecutionPlan("in_memory", len(frame.df), 1, None, "frame given")
    if plan.sample_rows:
        warnings.append(
            f"trained on a seeded random sample of {plan.sample_rows:,} of {plan.rows:,} entity rows "
            "(execution.sample_rows), not on all of them"
        )
    tags = {
        **request.tags,
        **_lineage_tags(request, frame, data),
        "asgard.job_id": job_id,
        "asgard.model_name": request.model_name,
        "mlflow.runName": f"{request.model_name}-{job_id}",
        **execution_tags({**plan.describe(), "path": path}),
    }
    parent = client.create_run(experiment_id, tags=tags)
    run_id = parent.info.run_id
    store = JobStore(settings)
    store.update(
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
        "job %s: parent run %s, %d trial(s) of %s/%s on %d rows",
        job_id,
        run_id,
        total,
        request.framework,
        request.model_type,
        len(data.X_train),
    )
    try:
        result = _train_and_log(settings, request, job_id, data, spec, num_samples, total, experiment_id, run_id, warnings, path)
        return {**result, "execution": {**plan.describe(), "path": path}, "feature_snapshots": dict(frame.snapshots)}
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise


def _train_and_log(
    settings: Settings,
    request: TrainRequest,
    job_id: str,
    data: PreparedData,
    spec: TrialSpec,
    num_samples: int,
    total: int,
    experiment_id: str,
    run_id: str,
    warnings: list[str],
    path: ExecutionPath,
) -> dict[str, Any]:
    import ray

    from asgard_ray.monitoring.profile import build_reference_profile

    hp = request.hyperparameters
    callbacks = [
        TrialRunLogger(settings, experiment_id, run_id, spec.fixed_params),
        JobProgress(settings, job_id, spec.metric, spec.mode, total),
    ]
    models: dict[str, Any] | None = None
    if path == "warm":  # one after another, here, keeping each trial's model
        outcome, models = run_trials_inline(data, spec, hp.search_space, callbacks=callbacks, name=job_id)
    else:
        outcome = run_trials(
            data,
            spec,
            hp.search_space,
            num_samples=num_samples,
            max_concurrent_trials=hp.max_concurrent_trials,
            callbacks=callbacks,
            name=job_id,
        )
    best = outcome.winner(warnings)
    best_params = {**spec.fixed_params, **best.config}
    if models is not None:  # the best trial's own model: the same fit a refit would repeat
        model = models[best.trial_id]
    else:  # Tune's trials keep no model: fit the best configuration again on its own task
        refit = ray.remote(_refit).options(name=f"training:{job_id}:refit", num_cpus=1, max_retries=0)
        model = ray.get(refit.remote(spec, data, best_params))

    # each set predicted once, and reused by the metrics, the positive-class score and the plots
    on_train = predict_rows(model, data.X_train, spec.model_type)
    metrics = evaluate(model, data.X_train, data.y_train, spec.model_type, spec.n_classes, prefix="train_", predicted=on_train)
    X_eval, y_eval = data.eval_set
    on_eval = on_train
    if data.has_validation:
        on_eval = predict_rows(model, X_eval, spec.model_type)
        metrics.update(evaluate(model, X_eval, y_eval, spec.model_type, spec.n_classes, predicted=on_eval))
    eval_pred, eval_proba = on_eval
    score = positive_score(eval_proba, spec.n_classes or 2) if eval_proba is not None else np.asarray(eval_pred, dtype="float64")

    run_tags = {
        "asgard.num_trials": len(outcome.trials),
        "asgard.failed_trials": len(outcome.failed),
        "asgard.best_trial_id": best.trial_id,
        "asgard.selection_metric": spec.metric,
        "asgard.split": data.split,
        "asgard.validation_rows": len(y_eval) if data.has_validation else 0,
        "asgard.warnings": json.dumps(warnings),
    }
    example, signature = typed_signature(model, data.X_train.head(5), data.feature_dtypes)  # int64 stays int64

    def artifacts(client: Any) -> None:
        figures = model_figures(model, X_eval, y_eval, spec.model_type, data.feature_columns, data.classes, score, y_pred=eval_pred)
        for path, figure in figures.items():
            client.log_figure(run_id, figure, path)
        profile = build_reference_profile(
            data.X_train, data.feature_columns, predictions=score, label=data.decode(y_eval) if data.classes else y_eval
        )
        client.log_dict(run_id, profile, lineage.PROFILE_ARTIFACT)

    winner = Winner(request.framework, model, metrics, best_params, run_tags, example, signature)
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
        training_rows=len(data.X_train),
        validation_rows=len(data.X_val) if data.X_val is not None else 0,
        feature_columns=data.feature_columns,
        mlflow_run_url=run_url(settings, experiment_id, run_id),
        warnings=warnings,
    )
    log.info("job %s: run %s finished, %s=%s", job_id, run_id, spec.metric, metrics.get(spec.metric))
    return response.model_dump(mode="json")
