"""Hyperparameter trials: the search space's configurations, fitted as Ray tasks in one placement group.

Why Ray tasks and not Tune's trial actors: measured on 2 cores (``bench/tune_trials.py``; the note of
issue 24 has the profile), 8 trials of a 1-2 s fit spent 3.5-5 s in Tune's controller loop, trial
actors' start-up and result reporting, which took 8 parallel trials to 0.71-0.83 of a plain
sequential loop. Tasks run on workers Ray keeps warm between jobs, one scheduling round trip each.

- The job reserves ``concurrency`` bundles of ``cpus`` CPUs (``runtime.reserve_cpus``), so trials
  start together or wait (bounded) together, never oversubscribing a node; each trial fits with as
  many threads as its bundle has CPUs (a single trial gets every core of the largest node).
- The training set goes to the object store once (``ray.put``); every trial task reads it zero-copy.
- A trial hands back its metrics and, separately, its fitted model and its predictions on the rows
  that score it: only the best trial's are fetched, so the winner is never fitted twice.
- Configurations come from the search space here (``trial_configs``): every grid combination, and
  for sampled dimensions ``num_trials`` seeded draws (the request's ``split.seed``), so a request
  always tries the same configurations. The same configurations run inline, one after another, on a
  warm worker (``run_trials_inline``, small work), with the same fits and the same ranking.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from asgard_ray.errors import InvalidRequest
from asgard_ray.training.data import PreparedData
from asgard_ray.training.estimators import build_estimator
from asgard_ray.training.metrics import evaluate, predict_rows
from asgard_ray.training.schemas import SearchDimension

if TYPE_CHECKING:
    from asgard_ray.config import Settings

__all__ = [
    "DEFAULT_NUM_TRIALS",
    "TRAIN_METRIC_ROWS",
    "Fitted",
    "Trial",
    "TrialCallback",
    "TrialResult",
    "TrialSpec",
    "TrialsOutcome",
    "beats",
    "check_trial_cap",
    "count_trials",
    "error_text",
    "fit_and_score",
    "notify",
    "pick_best",
    "run_trials",
    "run_trials_inline",
    "trial_configs",
]

log = logging.getLogger(__name__)

DEFAULT_NUM_TRIALS = 4
TRAIN_METRIC_ROWS = 250_000
"""Training rows (a seeded sample) that a trial's ``train_`` metrics are computed on."""


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


@dataclass(frozen=True)
class Trial:
    """One configuration to fit: its id (``<job>_<index>``) and the tuned parameters."""

    trial_id: str
    config: dict[str, Any]


@dataclass
class TrialResult:
    """One finished (or failed) trial."""

    trial_id: str
    config: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass
class Fitted:
    """The best trial's model and its predictions on the rows that scored it."""

    model: Any
    eval_pred: np.ndarray
    eval_proba: np.ndarray | None


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


class TrialCallback(Protocol):
    """What follows the trials as they run (one MLflow child run each, the job's progress)."""

    def on_trial_start(self, trial: Trial) -> None:
        """A trial was submitted."""

    def on_trial_result(self, trial: Trial, metrics: dict[str, float]) -> None:
        """A trial finished with its metrics."""

    def on_trial_error(self, trial: Trial, error: str) -> None:
        """A trial raised."""


def error_text(error: BaseException) -> str:
    """The trial's own exception as ``Type: message``, without Ray's wrapper."""
    cause = getattr(error, "cause", None) or error
    return f"{type(cause).__name__}: {cause}"[:2000]


def notify(callbacks: Sequence[TrialCallback], name: str, *args: Any) -> None:
    """Call ``name`` on every callback; a failing callback is logged and never stops the trials."""
    for callback in callbacks:
        try:
            getattr(callback, name)(*args)
        except Exception:  # tracking trouble must not stop the trials
            log.exception("trial callback %s.%s failed", type(callback).__name__, name)


# --- the configurations --------------------------------------------------------------------------
def count_trials(search_space: dict[str, SearchDimension] | None, num_trials: int | None) -> tuple[int, list[int], int]:
    """Samples drawn, the size of each grid dimension, and the total trials (samples x grid product)."""
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


def _draw(dim: SearchDimension, rng: np.random.Generator) -> Any:
    if dim.type == "choice":
        values = list(dim.values or [])
        return values[int(rng.integers(len(values)))]
    low, high = float(dim.low or 0), float(dim.high or 0)
    if dim.type == "uniform":
        return float(rng.uniform(low, high))
    if dim.type == "loguniform":
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))
    return int(rng.integers(int(low), int(high)))  # randint: low <= x < high


def trial_configs(search_space: dict[str, SearchDimension] | None, num_trials: int | None, seed: int = 0) -> list[dict[str, Any]]:
    """Every configuration to try, in a fixed order: the grid's combinations, each with seeded draws of the rest.

    As Ray Tune's basic variant generator: ``num_trials`` (default 4) repeats of the grid when some
    dimension is sampled, one pass over the grid otherwise.
    """
    space = search_space or {}
    grid_dims = [(name, list(dim.values or [])) for name, dim in space.items() if dim.type == "grid"]
    sampled = [(name, dim) for name, dim in space.items() if dim.type != "grid"]
    samples = (num_trials or DEFAULT_NUM_TRIALS) if sampled else 1
    rng = np.random.default_rng(seed)
    combos = list(itertools.product(*(values for _, values in grid_dims)))
    out = []
    for _ in range(samples):
        for combo in combos:
            config = dict(zip([name for name, _ in grid_dims], combo, strict=True))
            config.update({name: _draw(dim, rng) for name, dim in sampled})
            out.append(config)
    return out


def _config_key(trial: TrialResult) -> str:
    return json.dumps(trial.config, sort_keys=True, default=str)


def beats(trial: TrialResult, best: TrialResult | None, metric: str, mode: str) -> bool:
    """Whether ``trial`` ranks above ``best`` (finite metric; a tie goes to the configuration sorting first)."""
    value = trial.metrics.get(metric)
    if trial.error is not None or value is None or not math.isfinite(value):
        return False
    if best is None:
        return True
    incumbent = best.metrics[metric]
    if value == incumbent:
        return _config_key(trial) < _config_key(best)
    return value > incumbent if mode == "max" else value < incumbent


def pick_best(trials: list[TrialResult], metric: str, mode: str) -> TrialResult | None:
    """The successful trial with the best finite ``metric``.

    A tie goes to the configuration that sorts first as JSON, not to the trial that ran first, so the
    winner does not depend on the order the trials finished in.
    """
    best: TrialResult | None = None
    for trial in trials:
        if beats(trial, best, metric, mode):
            best = trial
    return best


# --- one fit -------------------------------------------------------------------------------------
def _train_sample(data: PreparedData) -> tuple[Any, np.ndarray]:
    n = len(data.X_train)
    if n <= TRAIN_METRIC_ROWS:
        return data.X_train, data.y_train
    keep = np.sort(np.random.default_rng(0).choice(n, TRAIN_METRIC_ROWS, replace=False))
    return data.X_train.iloc[keep], data.y_train[keep]


def fit_and_score(spec: TrialSpec, data: PreparedData, params: dict[str, Any], threads: int = 1) -> tuple[Fitted, dict[str, float]]:
    """Fit one model on the training rows with ``threads`` threads, and score it.

    The ``train_`` metrics come from a seeded sample of at most ``TRAIN_METRIC_ROWS`` training rows;
    the held-out metrics from every validation row (or, with no validation set, the training rows).
    """
    from threadpoolctl import threadpool_limits

    model = build_estimator(spec.framework, spec.model_type, spec.estimator, params, threads=threads)
    with threadpool_limits(limits=threads):
        model.fit(data.X_train, data.y_train)
        X_eval, y_eval = data.eval_set
        on_eval = predict_rows(model, X_eval, spec.model_type)
        metrics = evaluate(model, X_eval, y_eval, spec.model_type, spec.n_classes, predicted=on_eval)
        if data.has_validation:
            X_fit, y_fit = _train_sample(data)
            train = evaluate(model, X_fit, y_fit, spec.model_type, spec.n_classes, prefix="train_")
        else:
            train = {f"train_{k}": v for k, v in metrics.items()}
            metrics = {}
    return Fitted(model, on_eval[0], on_eval[1]), {**train, **metrics}


def _fit_task(data: PreparedData, spec: TrialSpec, params: dict[str, Any], threads: int) -> tuple[dict[str, float], Fitted]:
    """The body of a trial task: metrics first (fetched for every trial), the fitted model second (for the best)."""
    fitted, metrics = fit_and_score(spec, data, params, threads)
    return metrics, fitted


# --- running them ----------------------------------------------------------------------------------
def run_trials_inline(
    data: PreparedData, spec: TrialSpec, configs: list[dict[str, Any]], *, callbacks: Sequence[TrialCallback] = (), name: str = "trials"
) -> tuple[TrialsOutcome, Fitted | None]:
    """Fit the configurations one after another in this process, on one thread (a warm worker: small work)."""
    trials: list[TrialResult] = []
    best: TrialResult | None = None
    best_fitted: Fitted | None = None
    for index, config in enumerate(configs):
        trial = Trial(f"{name}_{index:05d}", config)
        notify(callbacks, "on_trial_start", trial)
        try:
            fitted, metrics = fit_and_score(spec, data, {**spec.fixed_params, **config})
        except Exception as exc:
            result = TrialResult(trial.trial_id, config, error=error_text(exc))
            trials.append(result)
            notify(callbacks, "on_trial_error", trial, result.error)
            continue
        result = TrialResult(trial.trial_id, config, metrics)
        trials.append(result)
        notify(callbacks, "on_trial_result", trial, metrics)
        if beats(result, best, spec.metric, spec.mode):
            best, best_fitted = result, fitted
    log.info("%s: %d trial(s) inline, %d failed", name, len(trials), sum(t.error is not None for t in trials))
    return TrialsOutcome(trials, best), best_fitted


def run_trials(
    settings: Settings,
    data: PreparedData,
    spec: TrialSpec,
    configs: list[dict[str, Any]],
    *,
    concurrency: int,
    cpus: float,
    callbacks: Sequence[TrialCallback] = (),
    name: str = "trials",
) -> tuple[TrialsOutcome, Fitted | None]:
    """Fit the configurations as Ray tasks, ``concurrency`` at a time in bundles of ``cpus`` CPUs.

    Raises:
        ResourcesUnavailable: The bundles were not free within ``ASGARD_JOB_PENDING_TIMEOUT_S``.
    """
    import ray

    from asgard_ray.runtime import in_bundle, reserve_cpus

    threads = max(1, int(cpus))
    concurrency = max(1, min(concurrency, len(configs)))
    data_ref = ray.put(data)
    task = ray.remote(_fit_task)
    trials: list[TrialResult] = []
    best: TrialResult | None = None
    best_ref: Any = None
    with reserve_cpus(settings, [cpus] * concurrency, f"{name}: {len(configs)} trial(s)") as group:
        waiting = list(enumerate(configs))
        running: dict[Any, tuple[Trial, int, Any]] = {}
        free = list(range(concurrency))
        while waiting or running:
            while waiting and free:
                bundle = free.pop()
                index, config = waiting.pop(0)
                trial = Trial(f"{name}_{index:05d}", config)
                notify(callbacks, "on_trial_start", trial)
                refs: Any = task.options(
                    num_returns=2,
                    num_cpus=cpus,
                    max_retries=0,
                    name=f"{name}:trial-{index}",
                    scheduling_strategy=in_bundle(group, bundle),
                ).remote(data_ref, spec, {**spec.fixed_params, **config}, threads)
                metrics_ref, fitted_ref = refs
                running[metrics_ref] = (trial, bundle, fitted_ref)
            done, _ = ray.wait(list(running), num_returns=1)
            trial, bundle, fitted_ref = running.pop(done[0])
            free.append(bundle)
            try:
                metrics = ray.get(done[0])
            except Exception as exc:
                result = TrialResult(trial.trial_id, trial.config, error=error_text(exc))
                trials.append(result)
                notify(callbacks, "on_trial_error", trial, result.error)
                continue
            result = TrialResult(trial.trial_id, trial.config, metrics)
            trials.append(result)
            notify(callbacks, "on_trial_result", trial, metrics)
            if beats(result, best, spec.metric, spec.mode):
                best, best_ref = result, fitted_ref  # the others' models leave the object store with their refs
    fitted = ray.get(best_ref) if best_ref is not None else None
    log.info(
        "%s: %d trial(s), %d failed, best %s=%s",
        name,
        len(trials),
        sum(t.error is not None for t in trials),
        spec.metric,
        best.metrics.get(spec.metric) if best else None,
    )
    return TrialsOutcome(trials, best), fitted
