"""Evaluation metrics of a fitted model: accuracy, precision, recall, f1, roc_auc, log_loss / rmse, mae, r2.

Metrics that are undefined for the rows at hand (ROC AUC with one class present, R^2 of a constant)
are left out rather than reported as NaN.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

__all__ = ["classification_metrics", "evaluate", "positive_score", "regression_metrics"]


def positive_score(proba: np.ndarray, n_classes: int) -> np.ndarray:
    """One score per row: P(class 1) for binary, P(the only class) for one class, max P otherwise."""
    proba = np.asarray(proba, dtype="float64")
    if proba.ndim == 1:
        return proba
    if n_classes == 2:
        return proba[:, 1]
    if n_classes == 1:
        return proba[:, 0]
    return proba.max(axis=1)


def classification_metrics(y: np.ndarray, y_pred: np.ndarray, proba: np.ndarray, n_classes: int) -> dict[str, float]:
    """Classification metrics on encoded labels (0..n_classes-1) and class probabilities."""
    from sklearn import metrics as skm

    y = np.asarray(y)
    y_pred = np.asarray(y_pred).astype(np.int64)
    out: dict[str, float] = {"accuracy": skm.accuracy_score(y, y_pred)}
    average = "binary" if n_classes == 2 else "micro" if n_classes == 1 else "weighted"
    kwargs: dict[str, Any] = {"average": average, "zero_division": 0}
    if n_classes == 1:
        kwargs["labels"] = [0]
    out["precision"] = skm.precision_score(y, y_pred, **kwargs)
    out["recall"] = skm.recall_score(y, y_pred, **kwargs)
    out["f1"] = skm.f1_score(y, y_pred, **kwargs)
    present = np.unique(y)
    proba = np.asarray(proba, dtype="float64")
    if n_classes >= 2 and proba.ndim == 2 and proba.shape[1] >= n_classes:
        cols = proba[:, :n_classes]
        cols = cols / np.clip(cols.sum(axis=1, keepdims=True), 1e-15, None)
        out["log_loss"] = skm.log_loss(y, cols, labels=list(range(n_classes)))
        if len(present) == n_classes:
            if n_classes == 2:
                out["roc_auc"] = skm.roc_auc_score(y, cols[:, 1])
            else:
                out["roc_auc"] = skm.roc_auc_score(y, cols, multi_class="ovr", average="weighted", labels=list(range(n_classes)))
    return {k: float(v) for k, v in out.items() if math.isfinite(float(v))}


def regression_metrics(y: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Regression metrics: root mean squared error, mean absolute error and R^2."""
    from sklearn import metrics as skm

    y = np.asarray(y, dtype="float64")
    y_pred = np.asarray(y_pred, dtype="float64")
    out = {"rmse": math.sqrt(skm.mean_squared_error(y, y_pred)), "mae": skm.mean_absolute_error(y, y_pred)}
    if len(y) >= 2 and np.ptp(y) > 0:
        out["r2"] = skm.r2_score(y, y_pred)
    return {k: float(v) for k, v in out.items() if math.isfinite(float(v))}


Predicted = tuple[np.ndarray, np.ndarray | None]
"""A model's labels (or values) for some rows, and its class probabilities for a classifier."""


def predict_rows(model: Any, X: Any, model_type: str) -> Predicted:
    """Labels and, for a classifier, probabilities; one pass where the labels are the probabilities' arg-max."""
    from asgard_ray.scoring.predict import argmax_predicts

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if model_type != "classification":
            return np.asarray(model.predict(X)), None
        proba = np.asarray(model.predict_proba(X))
        classes = getattr(model, "classes_", None)
        if classes is not None and argmax_predicts(model):
            return np.asarray(classes).take(np.argmax(proba, axis=1)), proba
        return np.asarray(model.predict(X)), proba


def evaluate(
    model: Any, X: Any, y: np.ndarray, model_type: str, n_classes: int | None, prefix: str = "", predicted: Predicted | None = None
) -> dict[str, float]:
    """Score a fitted model on rows ``X`` with labels ``y``; keys get ``prefix`` (e.g. ``train_``).

    ``predicted``: the model's ``predict_rows`` for ``X`` when the caller already has it.
    """
    y_pred, proba = predicted if predicted is not None else predict_rows(model, X, model_type)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # probabilities come with a classifier's predictions only
        result = classification_metrics(y, y_pred, proba, n_classes or 2) if proba is not None else regression_metrics(y, y_pred)
    return {f"{prefix}{k}": v for k, v in result.items()}
