"""Native predict for LightGBM, XGBoost and scikit-learn models (no MLflow at scoring time).

The results equal MLflow's pyfunc ``predict`` for the same model: estimators with the scikit-learn
API answer ``predict`` (class labels for classifiers) and ``predict_proba``; raw boosters give
probabilities that are thresholded at 0.5 (binary) or arg-maxed (multi-class).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["Prediction", "argmax_predicts", "predict_native", "proba_column"]

_SAFE = re.compile(r"[^A-Za-z0-9_]+")


def proba_column(label: Any) -> str:
    """Output column holding the probability of one class, e.g. ``proba_1``."""
    return f"proba_{_SAFE.sub('_', str(label))}"


@dataclass
class Prediction:
    """Predictions of one batch: labels or values, and class probabilities for classifiers."""

    prediction: np.ndarray
    proba: np.ndarray | None = None
    classes: list[Any] | None = None


def _booster_kind(model: Any) -> str | None:
    mod = type(model).__module__
    name = type(model).__name__
    if name == "Booster" and mod.startswith("lightgbm"):
        return "lightgbm"
    if name == "Booster" and mod.startswith("xgboost"):
        return "xgboost"
    return None


_ARGMAX_CLASSIFIERS = (
    "lightgbm.sklearn.LGBMClassifier",
    "xgboost.sklearn.XGBClassifier",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.ensemble._forest.ExtraTreesClassifier",
    "sklearn.tree._classes.DecisionTreeClassifier",
)


def argmax_predicts(model: Any) -> bool:
    """Whether ``model.predict`` is exactly ``classes_[argmax(predict_proba)]`` (a second pass can be skipped)."""
    cls = type(model)
    return f"{cls.__module__}.{cls.__qualname__}" in _ARGMAX_CLASSIFIERS


def _from_scores(scores: np.ndarray, classes: list[Any] | None) -> Prediction:
    if scores.ndim == 1:
        labels = classes or [0, 1]
        proba = np.column_stack([1.0 - scores, scores])
        pred = np.where(scores > 0.5, labels[1], labels[0])
    else:
        labels = classes or list(range(scores.shape[1]))
        proba = scores
        pred = np.asarray(labels)[np.argmax(scores, axis=1)]
    return Prediction(prediction=np.asarray(pred), proba=proba, classes=list(labels))


def predict_native(
    model: Any,
    X: pd.DataFrame,  # noqa: N803 - the usual name
    *,
    model_type: str | None,
    classes: list[Any] | None = None,
    num_threads: int | None = None,
) -> Prediction:
    """Predict a batch with a native model object.

    Args:
        model: LightGBM/XGBoost booster or scikit-learn-API estimator.
        X: The model's input columns, in training order.
        model_type: ``classification`` or ``regression`` (``None``: guessed from the model).
        classes: Class labels in probability-column order, when the model does not carry them.
        num_threads: Threads for boosters (``None``: the library's default).
    """
    classify = model_type == "classification" or (model_type is None and hasattr(model, "predict_proba"))
    kind = _booster_kind(model)
    if kind == "lightgbm":
        kwargs = {"num_threads": num_threads} if num_threads else {}
        scores = np.asarray(model.predict(X, **kwargs))
        return _from_scores(scores, classes) if classify else Prediction(prediction=scores)
    if kind == "xgboost":
        import xgboost as xgb

        if num_threads:
            model.set_param({"nthread": num_threads})
        scores = np.asarray(model.predict(xgb.DMatrix(X)))
        return _from_scores(scores, classes) if classify else Prediction(prediction=scores)
    if classify and hasattr(model, "predict_proba"):
        proba = np.asarray(model.predict_proba(X))
        raw_labels = getattr(model, "classes_", None)
        labels = [
            c.item() if hasattr(c, "item") else c for c in (raw_labels if raw_labels is not None else classes or range(proba.shape[1]))
        ]
        if raw_labels is not None and argmax_predicts(model):
            # these estimators' predict() is exactly classes_[argmax(predict_proba)]: skip a second pass
            pred = np.asarray(raw_labels).take(np.argmax(proba, axis=1))
        else:
            pred = np.asarray(model.predict(X))
        return Prediction(prediction=pred, proba=proba, classes=labels)
    return Prediction(prediction=np.asarray(model.predict(X)))
