"""What a training request asks for, decided before any data is read: limits, trials, metric, resources, tags.

Both modes (in memory and data-parallel) and the training kind's ``prepare`` take these from here,
so a request is checked, planned and recorded the same way whichever mode runs it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from asgard_ray import lineage
from asgard_ray.config import Settings
from asgard_ray.errors import InvalidRequest
from asgard_ray.training.estimators import check_param_bounds, resolve_params
from asgard_ray.training.modes import choose_mode
from asgard_ray.training.schemas import CLASSIFICATION_METRICS, REGRESSION_METRICS, TrainRequest, metric_mode
from asgard_ray.training.trials import check_trial_cap, trial_configs

if TYPE_CHECKING:
    from asgard_ray.features import TrainingFrame
    from asgard_ray.runtime import Capacity

__all__ = ["TrialResources", "execution_tags", "lineage_tags", "plan_trials", "selection_metric", "trial_resources", "validate_request"]


def validate_request(request: TrainRequest, settings: Settings | None = None) -> tuple[dict[str, Any], list[str]]:
    """Check what can be checked without data: estimator, parameter names and bounds, trial cap, mode, metric.

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


def plan_trials(request: TrainRequest) -> tuple[list[dict[str, Any]], list[str]]:
    """The configurations to try (seeded with ``split.seed``) and warnings about ignored settings."""
    hp = request.hyperparameters
    configs = trial_configs(hp.search_space, hp.num_trials, request.split.seed)
    warnings: list[str] = []
    sampled = any(dim.type != "grid" for dim in (hp.search_space or {}).values())
    if not sampled and hp.num_trials and hp.num_trials > 1:
        reason = "a grid runs each combination once" if hp.search_space else "there is no search_space"
        warnings.append(f"num_trials={hp.num_trials} ignored: {reason}")
    return configs, warnings


def selection_metric(request: TrainRequest, y_eval: np.ndarray, n_classes: int | None, has_validation: bool) -> tuple[str, str, list[str]]:
    """The metric (and mode) that ranks trials, adjusted to what the evaluation rows can measure."""
    hp = request.hyperparameters
    warnings: list[str] = []
    metric = (hp.metric or ("roc_auc" if request.model_type == "classification" else "rmse")).removeprefix("train_")
    if metric == "roc_auc" and len(np.unique(y_eval)) < 2:
        if hp.metric:
            warnings.append("roc_auc is undefined with one class in the evaluation rows; ranked trials by accuracy")
        metric = "accuracy"
    if metric == "log_loss" and n_classes is not None and n_classes < 2:
        warnings.append("log_loss is undefined with one class; ranked trials by accuracy")
        metric = "accuracy"
    mode = hp.mode or metric_mode(metric)
    return (metric if has_validation else f"train_{metric}"), mode, warnings


@dataclass(frozen=True)
class TrialResources:
    """How many trials run at once, and the CPUs (so threads) each one holds."""

    concurrency: int
    cpus: float


def trial_resources(request: TrainRequest, settings: Settings, trials: int, capacity: Capacity) -> TrialResources:
    """Size the in-memory trials to the cluster: as many at once as CPUs allow, each with its share of a node.

    ``ASGARD_TRAIN_CPUS_PER_TRIAL`` fixes the share; by default a lone trial gets every CPU of the
    largest node (threads), and many trials run one CPU each, side by side.
    """
    hp = request.hyperparameters
    node = max(1, int(capacity.largest_node_cpus))
    total = max(1, int(capacity.total_cpus))
    if settings.asgard_train_cpus_per_trial:
        cpus = min(float(settings.asgard_train_cpus_per_trial), float(node))
        concurrency = min(trials, hp.max_concurrent_trials or max(1, math.floor(total / cpus)))
        return TrialResources(max(1, concurrency), cpus)
    concurrency = max(1, min(trials, hp.max_concurrent_trials or total))
    return TrialResources(concurrency, float(max(1, node // concurrency) if concurrency <= node else 1))


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


def lineage_tags(
    request: TrainRequest, frame: TrainingFrame, classes: list[Any] | None, training_rows: int, entity_hash: str
) -> dict[str, str]:
    """The lineage tags of a parent run: what scoring and monitoring read back from the model's version."""
    from asgard_ray.training.tracking import git_commit

    tags = {
        lineage.TAG_FEATURE_COLUMNS: json.dumps(list(frame.feature_columns)),
        lineage.TAG_FEATURE_VIEWS: json.dumps(list(frame.feature_views)),
        lineage.TAG_FEAST_REGISTRY_VERSION: str(frame.registry_version or ""),
        lineage.TAG_JOIN_KEYS: json.dumps(list(frame.join_keys)),
        lineage.TAG_LABEL: str(frame.label),
        lineage.TAG_FRAMEWORK: request.framework,
        lineage.TAG_MODEL_TYPE: request.model_type,
        lineage.TAG_TRAINING_ROWS: str(training_rows),
        lineage.TAG_ENTITY_HASH: entity_hash,
        **lineage.gold_snapshot_tags(frame.snapshots),
    }
    if classes is not None:
        tags[lineage.TAG_CLASSES] = json.dumps([c.item() if hasattr(c, "item") else c for c in classes])
    commit = git_commit()
    if commit:
        tags[lineage.TAG_GIT_COMMIT] = commit
    return tags
