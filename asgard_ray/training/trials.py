"""Hyperparameter trials on Ray Tune: one function trainable per fit, data shared via the object store.

Why Tune function trainables rather than Ray Train's ``XGBoostTrainer`` / ``LightGBMTrainer``: the
training frame comes back from Feast as one in-memory pandas frame, and one fit of it takes seconds
on one core. Ray Train would start a worker group per trial and report through
``RayTrainReportCallback`` (about 2 s per report here) to spread data that already fits on one
worker. Trials pass the data with ``tune.with_parameters`` (one object-store copy, not one per
trial), reuse their actors, and pin every fit to one thread, so N trials use N cores.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from asgard_ray.errors import InvalidRequest
from asgard_ray.training.data import PreparedData
from asgard_ray.training.estimators import build_estimator
from asgard_ray.training.metrics import evaluate
from asgard_ray.training.schemas import SearchDimension

if TYPE_CHECKING:
    from asgard_ray.config import Settings
    from asgard_ray.training.dataset import ShardedData

__all__ = [
    "DEFAULT_NUM_TRIALS",
    "TrialResult",
    "TrialSpec",
    "TrialsOutcome",
    "check_trial_cap",
    "count_trials",
    "fit_and_score",
    "grid_configs",
    "param_space",
    "run_trials",
    "run_trials_inline",
]

log = logging.getLogger(__name__)

DEFAULT_NUM_TRIALS = 4


@dataclass(frozen=True)
class TrialSpec:
    """What every trial fits: the estimator, its fixed parameters and the metric that ranks trials."""

    framework: str
    model_type: str
    estimator: str | None
    fixed_params: dict[str, Any]
    metric: str
    mode: str
    n_classes: int | None = None


@dataclass
class TrialResult:
    """One finished (or failed) trial."""

    trial_id: str
    config: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass
class TrialsOutcome:
    """Every trial and the best one."""

    trials: list[TrialResult]
    best: TrialResult | None

    @property
    def failed(self) -> list[TrialResult]:
        """The trials that raised."""
        return [t for t in self.trials if t.error is not None]

    def winner(self, warnings: list[str]) -> TrialResult:
        """The best trial; ``InvalidRequest`` if every trial failed (a warning notes partial failures)."""
        if self.best is None:
            first = next((t.error for t in self.failed), None)
            raise InvalidRequest(
                f"all {len(self.trials)} trial(s) failed; first error: {first}", detail={"errors": [t.error for t in self.failed][:10]}
            )
        if self.failed:
            warnings.append(f"{len(self.failed)} of {len(self.trials)} trial(s) failed; see their MLflow runs")
        return self.best


def fit_and_score(spec: TrialSpec, data: PreparedData, params: dict[str, Any]) -> tuple[Any, dict[str, float]]:
    """Fit one model on the training rows (one thread) and score it on training and validation rows."""
    from threadpoolctl import threadpool_limits

    model = build_estimator(spec.framework, spec.model_type, spec.estimator, params)
    with threadpool_limits(limits=1):
        model.fit(data.X_train, data.y_train)
        metrics = evaluate(model, data.X_train, data.y_train, spec.model_type, spec.n_classes, prefix="train_")
        if data.has_validation:
            X_val, y_val = data.eval_set
            metrics.update(evaluate(model, X_val, y_val, spec.model_type, spec.n_classes))
    return model, metrics


def _trainable(config: dict[str, Any], data: PreparedData, spec: TrialSpec) -> None:
    """The Tune function trainable: one fit, one report."""
    from ray import tune

    _, metrics = fit_and_score(spec, data, {**spec.fixed_params, **config})
    tune.report(metrics)


def param_space(search_space: dict[str, SearchDimension] | None) -> tuple[dict[str, Any], bool]:
    """Tune's param space for a search space, and whether it samples (as opposed to a pure grid)."""
    from ray import tune

    space: dict[str, Any] = {}
    sampled = False
    for name, dim in (search_space or {}).items():
        if dim.type == "grid":
            space[name] = tune.grid_search(list(dim.values or []))
            continue
        sampled = True
        if dim.type == "choice":
            space[name] = tune.choice(list(dim.values or []))
        elif dim.type == "uniform":
            space[name] = tune.uniform(float(dim.low or 0), float(dim.high or 0))
        elif dim.type == "loguniform":
            space[name] = tune.loguniform(float(dim.low or 0), float(dim.high or 0))
        else:
            space[name] = tune.randint(int(dim.low), int(dim.high))  # type: ignore[arg-type]
    return space, sampled


def count_trials(search_space: dict[str, SearchDimension] | None, num_trials: int | None) -> tuple[int, list[int], int]:
    """Tune's ``num_samples``, the size of each grid dimension, and the total trials (samples x grid product)."""
    dims = list((search_space or {}).values())
    grid = [len(d.values or []) for d in dims if d.type == "grid"]
    sampled = any(d.type != "grid" for d in dims)
    samples = (num_trials or DEFAULT_NUM_TRIALS) if sampled else 1
    return samples, grid, samples * math.prod(grid)


def check_trial_cap(search_space: dict[str, SearchDimension] | None, num_trials: int | None, settings: Settings) -> int:
    """Return the total trial count, or refuse a request whose grid product exceeds ``ASGARD_MAX_TRIALS``.

    Raises:
        InvalidRequest: The total (samples x every grid dimension) is over the cap; the message names both.
    """
    samples, grid, total = count_trials(search_space, num_trials)
    cap = settings.asgard_max_trials
    if total > cap:
        factors = " x ".join(str(n) for n in ([samples] if samples > 1 else []) + grid) or str(total)
        raise InvalidRequest(
            f"the search space makes {factors} = {total:,} trials, over the cap of {cap:,} trials per request "
            f"(setting ASGARD_MAX_TRIALS); use fewer grid values, or sample with num_trials instead of a grid",
            detail={"trials": total, "max_trials": cap, "grid": grid, "samples": samples},
        )
    return total


def _better(a: float, b: float, mode: str) -> bool:
    return a > b if mode == "max" else a < b


def _config_key(trial: TrialResult) -> str:
    return json.dumps(trial.config, sort_keys=True, default=str)


def pick_best(trials: list[TrialResult], metric: str, mode: str) -> TrialResult | None:
    """The successful trial with the best finite ``metric``.

    A tie goes to the configuration that sorts first as JSON, not to the trial that ran first, so the
    winner does not depend on the order the trials ran in (Tune's, or the warm worker's).
    """
    best: TrialResult | None = None
    for trial in trials:
        value = trial.metrics.get(metric)
        if trial.error is not None or value is None or not math.isfinite(value):
            continue
        tie = best is not None and value == best.metrics[metric] and _config_key(trial) < _config_key(best)
        if best is None or _better(value, best.metrics[metric], mode) or tie:
            best = trial
    return best


def grid_configs(search_space: dict[str, SearchDimension] | None) -> list[dict[str, Any]]:
    """Every configuration of a pure grid (no sampled dimension), in a fixed order."""
    dims = [(name, list(dim.values or [])) for name, dim in (search_space or {}).items()]
    if any(dim.type != "grid" for dim in (search_space or {}).values()):
        raise ValueError("grid_configs takes a grid-only search space")
    return [dict(zip([n for n, _ in dims], combo, strict=True)) for combo in itertools.product(*(v for _, v in dims))]


def run_trials_inline(
    data: PreparedData,
    spec: TrialSpec,
    search_space: dict[str, SearchDimension] | None = None,
    *,
    callbacks: list[Any] | None = None,
    name: str = "asgard-trials",
) -> tuple[TrialsOutcome, dict[str, Any]]:
    """Run a grid's trials one after another in this process (the warm worker's fast path).

    The same fits as ``run_trials`` (``fit_and_score``, one thread), reported to the same Tune
    callbacks (one MLflow child run per trial, the job's progress) with Tune's hook names, and ranked
    by the same ``pick_best``. Returns the outcome and each successful trial's fitted model by trial id.
    """
    trials: list[TrialResult] = []
    models: dict[str, Any] = {}
    for index, config in enumerate(grid_configs(search_space)):
        trial = _InlineTrial(trial_id=f"{name}_{index:05d}", config=config)
        _hook(callbacks, "on_trial_start", trial)
        try:
            model, metrics = fit_and_score(spec, data, {**spec.fixed_params, **config})
        except Exception as exc:
            trial.status, trial.error_message = "ERROR", _error_text(exc)
            trials.append(TrialResult(trial_id=trial.trial_id, config=config, error=trial.error_message))
            _hook(callbacks, "on_trial_error", trial)
            continue
        _hook(callbacks, "on_trial_result", trial, result={**metrics, "training_iteration": 1, "timestamp": time.time()})
        trial.status = "TERMINATED"
        _hook(callbacks, "on_trial_complete", trial)
        trials.append(TrialResult(trial_id=trial.trial_id, config=config, metrics=metrics))
        models[trial.trial_id] = model
    best = pick_best(trials, spec.metric, spec.mode)
    log.info("%s: %d trials inline, %d failed", name, len(trials), sum(t.error is not None for t in trials))
    return TrialsOutcome(trials=trials, best=best), models


@dataclass
class _InlineTrial:
    """What the Tune callbacks read of a trial (``trial_id``, ``config``, ``status``, the error)."""

    trial_id: str
    config: dict[str, Any]
    status: str = "RUNNING"
    error_message: str | None = None
    pickled_error_file: str | None = None
    error_file: str | None = None


def _hook(callbacks: list[Any] | None, hook: str, trial: _InlineTrial, **kwargs: Any) -> None:
    for callback in callbacks or []:
        getattr(callback, hook)(iteration=0, trials=[], trial=trial, **kwargs)


def run_trials(
    data: PreparedData | ShardedData,
    spec: TrialSpec,
    search_space: dict[str, SearchDimension] | None = None,
    *,
    num_samples: int = 1,
    max_concurrent_trials: int | None = None,
    callbacks: list[Any] | None = None,
    name: str = "asgard-trials",
    trainable: Any = None,
    resources: dict[str, float] | None = None,
    trainable_kwargs: dict[str, Any] | None = None,
) -> TrialsOutcome:
    """Run the trials on the connected Ray cluster with Tune and return every result.

    Trials that raise are reported with their error (Tune does not stop the others). Tune's local
    experiment folder is temporary: no checkpoints are kept (the best configuration is refit), so
    nothing relies on a disk shared between nodes. ``trainable``, ``resources`` and ``trainable_kwargs``
    replace the in-memory function trainable (data-parallel trials: ``training.distributed``).
    """
    from ray import tune

    space, _ = param_space(search_space)
    storage = tempfile.mkdtemp(prefix="asgard-tune-")
    fn = tune.with_parameters(trainable or _trainable, data=data, spec=spec, **(trainable_kwargs or {}))
    trainable = tune.with_resources(fn, resources or {"cpu": 1})
    tuner = tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(num_samples=num_samples, max_concurrent_trials=max_concurrent_trials, reuse_actors=True),
        run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0, callbacks=callbacks or []),
    )
    try:
        grid = tuner.fit()
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    trials: list[TrialResult] = []
    for result in (grid[i] for i in range(len(grid))):
        metrics = {k: float(v) for k, v in (result.metrics or {}).items() if _is_metric(k, v)}
        trial_id = str((result.metrics or {}).get("trial_id") or os.path.basename(str(result.path)))
        error = None if result.error is None else _error_text(result.error)
        config = {k: v.item() if hasattr(v, "item") else v for k, v in (result.config or {}).items()}
        trials.append(TrialResult(trial_id=trial_id, config=config, metrics=metrics, error=error))
    best = pick_best(trials, spec.metric, spec.mode)
    log.info(
        "%s: %d trials, %d failed, best %s=%s",
        name,
        len(trials),
        sum(t.error is not None for t in trials),
        spec.metric,
        best.metrics.get(spec.metric) if best else None,
    )
    return TrialsOutcome(trials=trials, best=best)


_TUNE_KEYS = {
    "timestamp",
    "training_iteration",
    "time_this_iter_s",
    "time_total_s",
    "pid",
    "time_since_restore",
    "iterations_since_restore",
    "done",
    "date",
    "hostname",
    "node_ip",
    "trial_id",
    "experiment_tag",
    "checkpoint_dir_name",
    "should_checkpoint",
}


def _is_metric(key: str, value: Any) -> bool:
    return key not in _TUNE_KEYS and isinstance(value, int | float) and not isinstance(value, bool)


def _error_text(error: BaseException) -> str:
    """The trial's own exception, without Ray's wrapper traceback."""
    cause = getattr(error, "cause", None) or error
    return f"{type(cause).__name__}: {cause}"[:2000]
