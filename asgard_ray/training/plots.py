"""Pictures logged with the best model: feature importance, confusion matrix and ROC, residuals.

Figures are built with ``matplotlib.figure.Figure`` directly (no pyplot global state), so they are
safe in threads and need no display.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

__all__ = ["confusion_matrix_figure", "feature_importance_figure", "feature_importances", "model_figures", "residual_figure", "roc_figure"]

log = logging.getLogger(__name__)


def _figure(width: float = 6.4, height: float = 4.8, labels: list[str] | None = None) -> Any:
    """A figure with fixed margins, the left one wide enough for ``labels`` (the y tick labels).

    Fixed margins, not ``layout="tight"``: the tight layout draws every figure twice, which was 40%
    of the time a training request spent on its plots.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    widest = max((len(label) for label in labels or []), default=4)
    left = min(0.6, (0.4 + 0.075 * widest) / width)  # ~0.075 in per character at the default 10 pt
    fig.subplots_adjust(left=left, right=0.95, bottom=0.6 / height, top=1 - 0.45 / height)
    return fig


def feature_importances(model: Any, X: Any, y: np.ndarray) -> np.ndarray:
    """The model's own importances, else permutation importance on the given rows."""
    importances = getattr(model, "feature_importances_", None)
    if importances is not None:
        values = np.asarray(importances, dtype="float64")
        total = values.sum()
        return values / total if total > 0 else values
    from sklearn.inspection import permutation_importance

    result = permutation_importance(model, X, y, n_repeats=3, random_state=0, n_jobs=1)
    return np.clip(result.importances_mean, 0, None)


def feature_importance_figure(importances: np.ndarray, feature_columns: list[str]) -> Any:
    """Horizontal bars, most important feature on top."""
    order = np.argsort(importances)
    fig = _figure(6.4, max(2.5, 0.35 * len(feature_columns) + 1), labels=list(feature_columns))
    ax = fig.add_subplot()
    ax.barh([feature_columns[i] for i in order], importances[order], color="#3b75af")
    ax.set_xlabel("relative importance")
    ax.set_title("Feature importance")
    return fig


def confusion_matrix_figure(y: np.ndarray, y_pred: np.ndarray, classes: list[Any]) -> Any:
    """Counts of true (rows) against predicted (columns) classes."""
    from sklearn.metrics import confusion_matrix

    labels = list(range(len(classes)))
    cm = confusion_matrix(y, y_pred, labels=labels)
    fig = _figure(4.8, 4.2, labels=[str(c) for c in classes])
    ax = fig.add_subplot()
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax)
    names = [str(c) for c in classes]
    ax.set_xticks(labels, names)
    ax.set_yticks(labels, names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix")
    threshold = cm.max() / 2 if cm.size else 0
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="white" if cm[i, j] > threshold else "black")
    return fig


def roc_figure(y: np.ndarray, score: np.ndarray) -> Any:
    """ROC curve of a binary classifier, with its AUC in the legend."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(y, score)
    fig = _figure(4.8, 4.2)
    ax = fig.add_subplot()
    ax.plot(fpr, tpr, label=f"AUC = {roc_auc_score(y, score):.3f}", color="#c44e52")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC curve")
    ax.legend(loc="lower right")
    return fig


def residual_figure(y: np.ndarray, y_pred: np.ndarray) -> Any:
    """Residuals against predictions, and their histogram."""
    residuals = np.asarray(y, dtype="float64") - np.asarray(y_pred, dtype="float64")
    fig = _figure(9.6, 4.0)
    fig.subplots_adjust(left=0.1, wspace=0.25)  # room for the rotated y label, and between the two panels
    left, right = fig.subplots(1, 2)
    left.scatter(y_pred, residuals, s=8, alpha=0.5, color="#3b75af")
    left.axhline(0, color="grey", linestyle="--", linewidth=1)
    left.set_xlabel("predicted")
    left.set_ylabel("actual - predicted")
    left.set_title("Residuals")
    right.hist(residuals, bins=30, color="#55a868")
    right.set_xlabel("residual")
    right.set_title("Residual distribution")
    return fig


def model_figures(
    model: Any,
    X: Any,
    y: np.ndarray,
    model_type: str,
    feature_columns: list[str],
    classes: list[Any] | None,
    score: np.ndarray | None,
    y_pred: np.ndarray | None = None,
) -> dict[str, Any]:
    """Every figure for a fitted model, keyed by artifact path (``plots/<name>.png``); ``y_pred``: ``model.predict(X)`` if known."""
    figures: dict[str, Any] = {}
    try:
        figures["plots/feature_importance.png"] = feature_importance_figure(feature_importances(model, X, y), feature_columns)
    except Exception:  # a plot must never fail a training run
        log.exception("feature importance plot failed")
    y_pred = model.predict(X) if y_pred is None else y_pred
    if model_type == "classification" and classes is not None:
        figures["plots/confusion_matrix.png"] = confusion_matrix_figure(y, y_pred, classes)
        if len(classes) == 2 and score is not None and len(np.unique(y)) == 2:
            figures["plots/roc_curve.png"] = roc_figure(y, score)
    elif model_type == "regression":
        figures["plots/residuals.png"] = residual_figure(y, y_pred)
    return figures
