"""MLflow tracking for training: experiments, the parent run, one nested child run per trial, the winner.

A run opened inside a trial would stay RUNNING if the trial's process died, so the child runs are
written on the driver by a trial callback (``TrialRunLogger``): it opens a run tagged
``mlflow.parentRunId`` when a trial starts, logs its metrics, and ends it FINISHED, or FAILED with
the error when the trial raises (a crashed worker included). ``log_winner`` is the one way both
modes log the best trial on the parent run.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asgard_ray.config import Settings
from asgard_ray.jobs import JobStore
from asgard_ray.training.trials import Trial

__all__ = [
    "JobProgress",
    "TrialRunLogger",
    "Winner",
    "ensure_experiment",
    "git_commit",
    "log_winner",
    "mlflow_client",
    "run_url",
    "typed_example",
    "typed_signature",
]

log = logging.getLogger(__name__)

_PARENT_TAG = "mlflow.parentRunId"
_RUN_NAME_TAG = "mlflow.runName"
TRIAL_ID_TAG = "asgard.trial_id"


def mlflow_client(settings: Settings) -> Any:
    """An MLflow client for the platform's tracking server (no global tracking state)."""
    import mlflow

    return mlflow.MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def ensure_experiment(settings: Settings, name: str) -> str:
    """The id of experiment ``name``, created (with the configured artifact root) if missing."""
    from mlflow.exceptions import MlflowException

    client = mlflow_client(settings)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=settings.mlflow_artifact_location or None)
    except MlflowException as exc:  # created concurrently by another request
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        log.debug("experiment %s created concurrently: %s", name, exc)
        return experiment.experiment_id


def run_url(settings: Settings, experiment_id: str, run_id: str | None = None) -> str:
    """Link to an experiment (or a run) in the MLflow UI."""
    base = f"{settings.tracking_uri.rstrip('/')}/#/experiments/{experiment_id}"
    return f"{base}/runs/{run_id}" if run_id else base


def git_commit() -> str | None:
    """Commit of the checkout the platform's code was loaded from, when it is a git checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


_NUMPY_DTYPES = {"int64": "int64", "int32": "int32", "float32": "float32", "float64": "float64"}


def typed_example(example: Any, feature_dtypes: dict[str, str]) -> Any:
    """The input example with each column in its feature view's dtype (``Int64`` stays int64).

    Training casts features to float64; logged as is, the signature would declare ``double`` for an
    int64 column, and MLflow's own clients (pyfunc, ``mlflow models serve``, ``spark_udf``) would then
    refuse a frame of the feature view's own types. A column with a missing value in the example
    stays float64 (an integer column cannot hold it).
    """
    out = example.copy()
    for col in out.columns:
        wanted = _NUMPY_DTYPES.get(str(feature_dtypes.get(col, "")).lower().removeprefix("primitivefeasttype."))
        if wanted is None or str(out[col].dtype) == wanted:
            continue
        if wanted.startswith("int") and (out[col].isna().any() or (out[col] % 1 != 0).any()):
            continue
        out[col] = out[col].astype(wanted)
    return out


def typed_signature(model: Any, example: Any, feature_dtypes: dict[str, str]) -> tuple[Any, Any]:
    """``(input_example, signature)`` for ``log_model`` with the feature view's dtypes (see ``typed_example``)."""
    from mlflow.models import infer_signature

    example = typed_example(example, feature_dtypes)
    return example, infer_signature(example, model.predict(example))


@dataclass(frozen=True)
class Winner:
    """What a training run logs of its best trial."""

    framework: str
    model: Any
    metrics: dict[str, float]
    params: dict[str, Any]
    tags: dict[str, Any]
    example: Any
    signature: Any


def log_winner(
    settings: Settings, run_id: str, experiment_id: str, winner: Winner, artifacts: Callable[[Any], None], thread_name: str = "artifacts"
) -> tuple[str, str]:
    """Log the best trial on run ``run_id``; return ``(logged model URI, the run's artifact URI)``.

    The metrics, parameters and tags (one ``log_batch``) and what ``artifacts(client)`` logs (figures,
    the reference profile) go up on a thread while the model is logged here: both sides spend much of
    their time waiting on the tracking server, so they overlap (a warm 2,000-entity training request:
    1.97 s -> 1.87 s p50, README). The run ends FINISHED, or FAILED if either side failed.
    """
    import mlflow
    from mlflow.entities import Metric, Param, RunTag

    from asgard_ray import lineage
    from asgard_ray.training.estimators import log_model

    client = mlflow_client(settings)

    def side() -> None:
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, 0, 0) for k, v in winner.metrics.items()],
            params=[Param(k, json.dumps(v) if isinstance(v, list | dict) else str(v)) for k, v in winner.params.items()],
            tags=[RunTag(k, str(v)) for k, v in winner.tags.items()],
        )
        artifacts(client)

    mlflow.set_tracking_uri(settings.tracking_uri)
    # the fluent API refuses a run of another experiment than the process's active one (a reused
    # worker, or a caller that called set_experiment): make the run's experiment the active one
    mlflow.set_experiment(experiment_id=experiment_id)
    with ThreadPoolExecutor(1, thread_name_prefix=thread_name) as pool:
        pending = pool.submit(side)
        with mlflow.start_run(run_id=run_id) as run:  # ends the run FINISHED on success, FAILED on error
            logged_uri = log_model(winner.framework, winner.model, lineage.MODEL_ARTIFACT, winner.signature, winner.example)
            pending.result()  # inside the run: a failed upload ends it FAILED, like a failed model log
    return logged_uri, run.info.artifact_uri


def _params(values: dict[str, Any]) -> list[Any]:
    from mlflow.entities import Param

    return [Param(k, json.dumps(v) if isinstance(v, list | dict) else str(v)[:6000]) for k, v in values.items()]


class TrialRunLogger:
    """Trial callback: one MLflow child run per trial under the parent run."""

    def __init__(self, settings: Settings, experiment_id: str, parent_run_id: str, fixed_params: dict[str, Any]) -> None:
        self.settings = settings
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.fixed_params = dict(fixed_params)
        self.runs: dict[str, str] = {}
        self.client = mlflow_client(settings)

    def on_trial_start(self, trial: Trial) -> None:
        """Open the trial's child run with its parameters."""
        run = self.client.create_run(
            self.experiment_id,
            tags={_PARENT_TAG: self.parent_run_id, _RUN_NAME_TAG: f"trial-{len(self.runs):02d}", TRIAL_ID_TAG: trial.trial_id},
        )
        self.runs[trial.trial_id] = run.info.run_id
        self.client.log_batch(run.info.run_id, params=_params({**self.fixed_params, **trial.config}))
        log.info("trial %s -> MLflow child run %s (parent %s)", trial.trial_id, run.info.run_id, self.parent_run_id)

    def on_trial_result(self, trial: Trial, metrics: dict[str, float]) -> None:
        """Log the trial's metrics and end its run FINISHED."""
        from mlflow.entities import Metric

        run_id = self.runs[trial.trial_id]
        now = int(time.time() * 1000)
        values = [Metric(k, float(v), now, 0) for k, v in metrics.items() if math.isfinite(float(v))]
        if values:
            self.client.log_batch(run_id, metrics=values)
        self.client.set_terminated(run_id, "FINISHED")

    def on_trial_error(self, trial: Trial, error: str) -> None:
        """End the trial's run FAILED, with the error as a tag."""
        run_id = self.runs[trial.trial_id]
        self.client.set_tag(run_id, "asgard.error", error[:5000])
        self.client.set_terminated(run_id, "FAILED")


class JobProgress:
    """Trial callback: keep the job record's trial counts and best metric up to date."""

    def __init__(self, settings: Settings, job_id: str, metric: str, mode: str, total: int) -> None:
        self.settings = settings
        self.job_id = job_id
        self.metric = metric
        self.mode = mode
        self.total = total
        self.done = 0
        self.failed = 0
        self.best: float | None = None

    def _save(self) -> None:
        progress = {
            "trials_total": self.total,
            "trials_done": self.done,
            "trials_failed": self.failed,
            "metric": self.metric,
            "best_metric": self.best,
        }
        try:
            JobStore(self.settings).update("training", self.job_id, progress=progress)
        except Exception:  # progress is informative; the job goes on
            log.exception("could not record progress of job %s", self.job_id)

    def on_trial_start(self, trial: Trial) -> None:
        """Nothing to record when a trial starts."""

    def on_trial_result(self, trial: Trial, metrics: dict[str, float]) -> None:
        """Count a finished trial and track the best metric so far."""
        value = metrics.get(self.metric)
        if (
            value is not None
            and math.isfinite(value)
            and (self.best is None or (value > self.best if self.mode == "max" else value < self.best))
        ):
            self.best = float(value)
        self.done += 1
        self._save()

    def on_trial_error(self, trial: Trial, error: str) -> None:
        """Count a failed trial."""
        self.done += 1
        self.failed += 1
        self._save()
