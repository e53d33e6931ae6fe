"""Metrics, best-trial choice and plots (pure logic, no Ray)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestClassifier

from asgard_ray.training.metrics import classification_metrics, evaluate, positive_score, regression_metrics
from asgard_ray.training.plots import model_figures
from asgard_ray.training.trials import TrialResult, pick_best


def test_binary_classification_metrics() -> None:
    y = np.array([0, 0, 1, 1])
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.8, 0.2]])
    m = classification_metrics(y, proba.argmax(axis=1), proba, 2)
    assert m["accuracy"] == 0.75 and m["precision"] == 1.0 and m["recall"] == 0.5
    assert m["f1"] == pytest.approx(2 / 3) and m["roc_auc"] == 0.75
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.6, 0.7, 0.2])))


def test_one_class_leaves_out_undefined_metrics() -> None:
    y = np.zeros(4, dtype=int)
    m = classification_metrics(y, y, np.ones((4, 1)), 1)
    assert m["accuracy"] == 1.0 and "roc_auc" not in m and "log_loss" not in m
    two = classification_metrics(y, y, np.tile([0.8, 0.2], (4, 1)), 2)  # both classes known, one present
    assert "roc_auc" not in two and "log_loss" in two


def test_regression_metrics() -> None:
    m = regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0]))
    assert m["rmse"] == pytest.approx(np.sqrt(4 / 3)) and m["mae"] == pytest.approx(2 / 3)
    assert m["r2"] == pytest.approx(1 - 4 / 2)
    assert "r2" not in regression_metrics(np.array([1.0, 1.0]), np.array([1.0, 2.0]))


def test_positive_score() -> None:
    proba = np.array([[0.2, 0.8], [0.6, 0.4]])
    assert list(positive_score(proba, 2)) == [0.8, 0.4]
    assert list(positive_score(np.array([[1.0], [1.0]]), 1)) == [1.0, 1.0]
    assert list(positive_score(np.array([[0.2, 0.5, 0.3]]), 3)) == [0.5]


def test_pick_best_skips_failed_and_non_finite() -> None:
    trials = [
        TrialResult("a", {"d": 1}, {"roc_auc": 0.7}),
        TrialResult("b", {"d": 2}, {"roc_auc": 0.9}, error="boom"),
        TrialResult("c", {"d": 3}, {"roc_auc": float("nan")}),
        TrialResult("d", {"d": 4}, {"roc_auc": 0.8}),
    ]
    assert pick_best(trials, "roc_auc", "max").trial_id == "d"
    assert pick_best(trials, "roc_auc", "min").trial_id == "a"
    assert pick_best([trials[1]], "roc_auc", "max") is None


def test_evaluate_prefixes_and_figures() -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.random(60), "b": rng.random(60)})
    y = (X["a"] > 0.5).astype(int).to_numpy()
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    m = evaluate(model, X, y, "classification", 2, prefix="train_")
    assert set(m) == {"train_accuracy", "train_precision", "train_recall", "train_f1", "train_roc_auc", "train_log_loss"}
    figs = model_figures(model, X, y, "classification", ["a", "b"], [0, 1], model.predict_proba(X)[:, 1])
    assert set(figs) == {"plots/feature_importance.png", "plots/confusion_matrix.png", "plots/roc_curve.png"}
    reg = HistGradientBoostingRegressor(max_iter=10).fit(X, X["a"] * 3)  # no feature_importances_: permutation
    figs = model_figures(reg, X, (X["a"] * 3).to_numpy(), "regression", ["a", "b"], None, None)
    assert set(figs) == {"plots/feature_importance.png", "plots/residuals.png"}


def test_pick_best_breaks_ties_by_config_not_by_order() -> None:
    a = TrialResult("a", {"max_depth": 4}, {"roc_auc": 0.8})
    b = TrialResult("b", {"max_depth": 2}, {"roc_auc": 0.8})
    assert pick_best([a, b], "roc_auc", "max").trial_id == "b"
    assert pick_best([b, a], "roc_auc", "max").trial_id == "b"  # the warm path and Tune may run them in any order


def test_trial_configs_expand_every_grid_combination_with_seeded_draws() -> None:
    from asgard_ray.training.schemas import SearchDimension
    from asgard_ray.training.trials import count_trials, trial_configs

    space = {
        "max_depth": SearchDimension.model_validate({"type": "grid", "values": [2, 4]}),
        "min_samples_leaf": SearchDimension.model_validate({"type": "grid", "values": [1, 5, 9]}),
    }
    configs = trial_configs(space, None)
    assert len(configs) == count_trials(space, None)[2] == 6
    assert {(c["max_depth"], c["min_samples_leaf"]) for c in configs} == {(d, m) for d in (2, 4) for m in (1, 5, 9)}
    assert trial_configs(None, None) == [{}]
    sampled = {**space, "subsample": SearchDimension.model_validate({"type": "uniform", "low": 0.5, "high": 0.9})}
    drawn = trial_configs(sampled, 3, seed=1)
    assert len(drawn) == count_trials(sampled, 3)[2] == 18 and all(0.5 <= c["subsample"] < 0.9 for c in drawn)
    assert drawn == trial_configs(sampled, 3, seed=1) and drawn != trial_configs(sampled, 3, seed=2)
