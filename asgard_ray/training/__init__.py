"""Training: Feast frames, trials on Ray, MLflow parent and child runs, the best model logged.

Names are imported lazily: trial tasks import ``asgard_ray.training.trials`` and should not pay for
MLflow and Feast on every worker start.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "DataSource",
    "Hyperparameters",
    "PreparedData",
    "SearchDimension",
    "SplitSpec",
    "TrainRequest",
    "TrainResponse",
    "TrainingJob",
    "TrainingService",
    "TrialSpec",
    "build_estimator",
    "entity_hash",
    "estimator_class",
    "evaluate",
    "fit_and_score",
    "prepare_data",
    "resolve_params",
    "run_training",
    "run_trials",
    "train_on_frame",
]

_HOME = {
    "DataSource": "schemas",
    "Hyperparameters": "schemas",
    "SearchDimension": "schemas",
    "SplitSpec": "schemas",
    "TrainRequest": "schemas",
    "TrainResponse": "schemas",
    "TrainingJob": "schemas",
    "PreparedData": "data",
    "entity_hash": "data",
    "prepare_data": "data",
    "build_estimator": "estimators",
    "estimator_class": "estimators",
    "resolve_params": "estimators",
    "evaluate": "metrics",
    "run_training": "pipeline",
    "train_on_frame": "pipeline",
    "TrainingService": "service",
    "TrialSpec": "trials",
    "fit_and_score": "trials",
    "run_trials": "trials",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'asgard_ray.training' has no attribute {name!r}")
    return getattr(importlib.import_module(f"asgard_ray.training.{_HOME[name]}"), name)
