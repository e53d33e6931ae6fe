"""One training request, end to end: training set -> trials on Ray -> the best trial's model -> MLflow.

``run_training`` is the body of the Ray task ``training:<job_id>`` (the jobs core runs it). It asks
for no CPU itself: the trials reserve theirs. Both modes take the same steps, and only where the
rows live differs:

- in memory (``train_on_frame``): the point-in-time frame is one pandas frame; the trials are Ray
  tasks (``trials.run_trials``) or, for small work on a warm worker, fits in this process
  (``trials.run_trials_inline``);
- data-parallel: the training set stays Ray Data blocks (``dataset.build_training_dataset``); each
  trial is a gang of workers (``distributed.run_dp_trials``) and the driver holds only the booster,
  the validation labels and predictions, and small samples.

Either way the best trial's own model is logged (never a refit), with the metrics its trial
computed, through ``tracking.log_winner``. The gold tables are pinned once; the parent run records
each pin as ``asgard.gold.<table>.snapshot_id`` and the answer as ``feature_snapshots``.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from asgard_ray import lineage
from asgard_ray.config import Settings
from asgard_ray.features import TrainingFrame, build_training_frame
from asgard_ray.jobs import ExecutionPath, JobStore
from asgard_ray.training.data import entity_hash, prepare_data
from asgard_ray.training.metrics import positive_score
from asgard_ray.training.modes import ExecutionPlan, choose_mode, sample_entities
from asgard_ray.training.plan import execution_tags, lineage_tags, plan_trials, selection_metric, trial_resources, validate_request
from asgard_ray.training.plots import model_figures
from asgard_ray.training.schemas import TrainingMetrics, TrainRequest, TrainResponse
from asgard_ray.training.tracking import JobProgress, TrialRunLogger, Winner, ensure_experiment, log_winner, mlflow_client, run_url
from asgard_ray.training.trials import TrialCallback, TrialsOutcome, TrialSpec, run_trials, run_trials_inline

if TYPE_CHECKING:
    from asgard_ray.training.dataset import ShardedData

__all__ = ["FIGURE_ROWS", "run_training", "train_on_dataset", "train_on_frame"]

log = logging.getLogger(__name__)

FIGURE_ROWS = 20_000
"""Evaluation rows (a seeded sample) behind the plots; metrics and profiles use every row."""


def run_training(settings: Settings, request_json: dict[str, Any], job_id: str, path: ExecutionPath = "cluster") -> dict[str, Any]:
    """Train as the request asks and return the ``TrainResponse`` as a dict (the job's result).

    ``path`` is where the job runs (``Plan.path``): ``cluster`` runs the trials as Ray tasks (or
    data-parallel gangs); ``warm`` (a warm worker, small work only) fits them one after another here.
    """
    request = TrainRequest.model_validate(request_json)
    validate_request(request, settings)
    plan = choose_mode(request, settings)
    log.info("job %s: %s mode (%s)", job_id, plan.mode, plan.reason)
    if plan.mode == "distributed":
        from asgard_ray.training.dataset import build_training_dataset

        return train_on_dataset(settings, request, build_training_dataset(settings, request), job_id, plan)
    entities, timestamps = sample_entities(request, plan)
    ds = request.data_source
    # the gold tables are pinned once, here: the frame holds exactly those snapshots (frame.snapshots)
    frame = build_training_frame(
        settings, ds.feature_views, entities, event_timestamps=timestamps, label=ds.target_column, as_of_snapshot=request.as_of_snapshot
    )
    return train_on_frame(settings, request, frame, job_id, plan, path=path)


def _open_run(settings: Settings, request: TrainRequest, job_id: str, tags: dict[str, str], total: int, metric: str) -> tuple[str, str]:
    """Create the parent run and link it from the job record; return ``(experiment_id, run_id)``."""
    experiment_id = ensure_experiment(settings, request.experiment_name)
    run_tags = {
        **request.tags,
        **tags,
        "asgard.job_id": job_id,
        "asgard.model_name": request.model_name,
        "mlflow.runName": f"{request.model_name}-{job_id}",
    }
    run_id = mlflow_client(settings).create_run(experiment_id, tags=run_tags).info.run_id
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
    return experiment_id, run_id


def _figure_rows(n: int) -> np.ndarray:
    """A seeded sample of at most ``FIGURE_ROWS`` row positions, in order."""
    if n <= FIGURE_ROWS:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, FIGURE_ROWS, replace=False))


def _answer(
    settings: Settings,
    request: TrainRequest,
    job_id: str,
    ids: tuple[str, str],
    outcome: TrialsOutcome,
    winner: Winner,
    artifacts: Any,
    rows: tuple[int, int],
    feature_columns: list[str],
    warnings: list[str],
    execution: dict[str, Any],
    snapshots: dict[str, int | None],
) -> dict[str, Any]:
    """Log the winner on the parent run and build the answer (both modes)."""
    experiment_id, run_id = ids
    logged_uri, artifact_uri = log_winner(settings, run_id, experiment_id, winner, artifacts, thread_name=f"{job_id}-artifacts")
    best = outcome.best
    assert best is not None
    response = TrainResponse(
        run_id=run_id,
        experiment_id=experiment_id,
        model_name=request.model_name,
        model_uri=f"runs:/{run_id}/{lineage.MODEL_ARTIFACT}",
        logged_model_uri=logged_uri,
        metrics=TrainingMetrics(metrics=winner.metrics),
        artifact_uri=artifact_uri,
        job_id=job_id,
        num_trials=len(outcome.trials),
        failed_trials=len(outcome.failed),
        best_params=winner.params,
        metric=str(winner.tags["asgard.selection_metric"]),
        training_rows=rows[0],
        validation_rows=rows[1],
        feature_columns=feature_columns,
        mlflow_run_url=run_url(settings, experiment_id, run_id),
        warnings=warnings,
        execution=execution,
        feature_snapshots=snapshots,
    )
    log.info("job %s: run %s finished (%s), %s", job_id, run_id, execution["mode"], {k: round(v, 4) for k, v in winner.metrics.items()})
    return response.model_dump(mode="json")


def _artifacts(
    run_id: str, model: Any, rows: tuple[Any, Any, Any, Any], spec: TrialSpec, features: list[str], classes: Any, profile: Any
) -> Any:
    """What ``log_winner`` uploads beside the model: the figures (``rows``: X, y, predictions, scores) and the profile."""

    def upload(client: Any) -> None:
        X, y, pred, score = rows
        for artifact, figure in model_figures(model, X, y, spec.model_type, features, classes, score, y_pred=pred).items():
            client.log_figure(run_id, figure, artifact)
        client.log_dict(run_id, profile(), lineage.PROFILE_ARTIFACT)

    return upload


def _run_tags(outcome: TrialsOutcome, metric: str, split: str, validation_rows: int, warnings: list[str]) -> dict[str, Any]:
    best = outcome.best
    return {
        "asgard.num_trials": len(outcome.trials),
        "asgard.failed_trials": len(outcome.failed),
        "asgard.best_trial_id": best.trial_id if best else "",
        "asgard.selection_metric": metric,
        "asgard.split": split,
        "asgard.validation_rows": validation_rows,
        "asgard.warnings": json.dumps(warnings),
    }


def train_on_frame(
    settings: Settings,
    request: TrainRequest,
    frame: TrainingFrame,
    job_id: str,
    plan: ExecutionPlan | None = None,
    *,
    path: ExecutionPath = "cluster",
) -> dict[str, Any]:
    """Train in memory on an already retrieved frame; the job record ``job_id`` must exist."""
    from asgard_ray.monitoring.profile import build_reference_profile, numeric_profile
    from asgard_ray.runtime import cluster_capacity
    from asgard_ray.training.tracking import typed_signature

    fixed, warnings = validate_request(request, settings)
    configs, plan_warnings = plan_trials(request)
    data = prepare_data(frame, request.model_type, request.split, settings.asgard_max_classes)
    warnings += plan_warnings + data.warnings
    X_eval, y_eval = data.eval_set
    n_classes = len(data.classes) if data.classes is not None else None
    metric, mode, metric_warnings = selection_metric(request, y_eval, n_classes, data.has_validation)
    warnings += metric_warnings
    spec = TrialSpec(request.framework, request.model_type, request.estimator, fixed, metric, mode, n_classes)
    plan = plan or ExecutionPlan("in_memory", len(frame.df), 1, None, "frame given")
    if plan.sample_rows:
        warnings.append(
            f"trained on a seeded random sample of {plan.sample_rows:,} of {plan.rows:,} entity rows "
            "(execution.sample_rows), not on all of them"
        )
    execution: dict[str, Any] = {**plan.describe(), "path": path}
    with ThreadPoolExecutor(1, thread_name_prefix=f"{job_id}-profile") as pool:
        # the training features' profile needs no model: it is computed while the trials fit
        features_profile: Future[dict[str, Any]] = pool.submit(build_reference_profile, data.X_train, data.feature_columns)
        tags = {**lineage_tags(request, frame, data.classes, len(data.X_train), entity_hash(frame)), **execution_tags(execution)}
        ids = _open_run(settings, request, job_id, tags, len(configs), metric)
        try:
            callbacks: list[TrialCallback] = [
                TrialRunLogger(settings, ids[0], ids[1], fixed),
                JobProgress(settings, job_id, metric, mode, len(configs)),
            ]
            if path == "warm":
                outcome, fitted = run_trials_inline(data, spec, configs, callbacks=callbacks, name=job_id)
            else:
                resources = trial_resources(request, settings, len(configs), cluster_capacity())
                execution.update(trials_at_once=resources.concurrency, cpus_per_trial=resources.cpus)
                outcome, fitted = run_trials(
                    settings, data, spec, configs, concurrency=resources.concurrency, cpus=resources.cpus, callbacks=callbacks, name=job_id
                )
            best = outcome.winner(warnings)
            assert fitted is not None
            score = (
                positive_score(fitted.eval_proba, n_classes or 2) if fitted.eval_proba is not None else fitted.eval_pred.astype("float64")
            )
            labels = data.decode(y_eval) if data.classes else y_eval
            rows = _figure_rows(len(y_eval))
            model = fitted.model

            def profile() -> dict[str, Any]:
                return {**features_profile.result(), "prediction": numeric_profile(score), "label": numeric_profile(labels)}

            figure_rows = (X_eval.iloc[rows], y_eval[rows], fitted.eval_pred[rows], score[rows])
            artifacts = _artifacts(ids[1], model, figure_rows, spec, data.feature_columns, data.classes, profile)

            run_tags = _run_tags(outcome, metric, data.split, len(y_eval) if data.has_validation else 0, warnings)
            example, signature = typed_signature(model, data.X_train.head(5), data.feature_dtypes)  # int64 stays int64
            winner = Winner(request.framework, model, best.metrics, {**fixed, **best.config}, run_tags, example, signature)
            validation_rows = len(data.X_val) if data.X_val is not None else 0
            return _answer(
                settings,
                request,
                job_id,
                ids,
                outcome,
                winner,
                artifacts,
                (len(data.X_train), validation_rows),
                data.feature_columns,
                warnings,
                execution,
                dict(frame.snapshots),
            )
        except BaseException:
            mlflow_client(settings).set_terminated(ids[1], "FAILED")
            raise


def train_on_dataset(settings: Settings, request: TrainRequest, data: ShardedData, job_id: str, plan: ExecutionPlan) -> dict[str, Any]:
    """Train data-parallel on a prepared dataset (``dataset.prepare_dataset``); the driver never holds the training set.

    The job record ``job_id`` must exist.
    """
    import pandas as pd
    from mlflow.models import infer_signature

    from asgard_ray.monitoring.profile import PROFILE_VERSION, numeric_profile
    from asgard_ray.training.dataset import SPLIT, profile_dataset
    from asgard_ray.training.distributed import cleanup, run_dp_trials, wrap_booster

    fixed, warnings = validate_request(request, settings)
    configs, plan_warnings = plan_trials(request)
    warnings += plan_warnings + data.warnings
    present = np.arange(data.n_classes or 0) if data.classes is not None else np.zeros(0)
    metric, mode, metric_warnings = selection_metric(request, present, data.n_classes, data.has_validation)
    warnings += metric_warnings
    spec = TrialSpec(request.framework, request.model_type, request.estimator, fixed, metric, mode, data.n_classes)
    cpus = settings.asgard_train_cpus_per_worker
    execution: dict[str, Any] = {**plan.describe(), "path": "cluster", "cpus_per_worker": cpus}
    entity_set = entity_hash(data.meta) if len(data.meta.df) else ""
    tags = {**lineage_tags(request, data.meta, data.classes, data.train_rows, entity_set), **execution_tags(execution)}
    ids = _open_run(settings, request, job_id, tags, len(configs), metric)
    try:
        callbacks: list[TrialCallback] = [
            TrialRunLogger(settings, ids[0], ids[1], fixed),
            JobProgress(settings, job_id, metric, mode, len(configs)),
        ]
        outcome, fit = run_dp_trials(
            settings,
            data,
            spec,
            configs,
            job_id=job_id,
            num_workers=plan.num_workers,
            cpus_per_worker=cpus,
            callbacks=callbacks,
            name=job_id,
        )
        best = outcome.winner(warnings)
        assert fit is not None
        model = wrap_booster(spec.framework, spec.model_type, fit.raw, spec.n_classes)
        execution.update(
            worker_nodes=[w["node_id"] for w in fit.workers],
            worker_rows=[w["rows"] for w in fit.workers],
            resumed_from_round=max((w["resumed_from"] for w in fit.workers), default=0),
        )
        score = positive_score(fit.eval_proba, spec.n_classes or 2) if fit.eval_proba is not None else fit.eval_pred.astype("float64")
        labels = np.asarray(data.classes, dtype=object)[fit.eval_label.astype(int)] if data.classes else fit.eval_label
        rows = _figure_rows(len(fit.eval_label))
        head = data.prepared.drop_columns([SPLIT]).take(5)
        example = pd.DataFrame(head)[data.feature_columns].astype("float64")

        def profile() -> dict[str, Any]:
            return {
                "version": PROFILE_VERSION,
                "n_rows": data.train_rows,
                "feature_columns": list(data.feature_columns),
                "dtypes": {c: "float64" for c in data.feature_columns},
                "features": profile_dataset(data),
                "prediction": numeric_profile(score),
                "label": numeric_profile(pd.to_numeric(pd.Series(labels), errors="coerce")),
            }

        figure_rows = (example, fit.eval_label[rows], fit.eval_pred[rows], score[rows])
        artifacts = _artifacts(ids[1], model, figure_rows, spec, data.feature_columns, data.classes, profile)

        run_tags = {**_run_tags(outcome, metric, data.split, data.val_rows, warnings), **execution_tags(execution)}
        winner = Winner(
            request.framework,
            model,
            best.metrics,
            {**fixed, **best.config},
            run_tags,
            example,
            infer_signature(example, model.predict(example)),
        )
        return _answer(
            settings,
            request,
            job_id,
            ids,
            outcome,
            winner,
            artifacts,
            (data.train_rows, data.val_rows),
            data.feature_columns,
            warnings,
            execution,
            dict(data.meta.snapshots),
        )
    except BaseException:
        mlflow_client(settings).set_terminated(ids[1], "FAILED")
        raise
    finally:
        cleanup(settings, job_id)
