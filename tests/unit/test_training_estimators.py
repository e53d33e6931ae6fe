"""Estimator choice, parameter checks and thread pinning (pure logic, no Ray)."""

from __future__ import annotations

import pytest

from asgard_ray.errors import InvalidRequest
from asgard_ray.training.estimators import build_estimator, estimator_class, resolve_params


@pytest.mark.parametrize(
    ("framework", "model_type", "estimator", "name"),
    [
        ("sklearn", "classification", None, "RandomForestClassifier"),
        ("sklearn", "regression", "ExtraTrees", "ExtraTreesRegressor"),
        ("sklearn", "classification", "HistGradientBoostingClassifier", "HistGradientBoostingClassifier"),
        ("sklearn", "regression", "gradient_boosting", "GradientBoostingRegressor"),
        ("xgboost", "classification", None, "XGBClassifier"),
        ("lightgbm", "regression", None, "LGBMRegressor"),
    ],
)
def test_estimator_class(framework: str, model_type: str, estimator: str | None, name: str) -> None:
    assert estimator_class(framework, model_type, estimator).__name__ == name


@pytest.mark.parametrize(
    ("framework", "model_type", "estimator", "needle"),
    [("keras", "classification", None, "framework"), ("sklearn", "ranking", None, "model_type"),
     ("sklearn", "classification", "SVC", "SVC"), ("lightgbm", "classification", "RandomForest", "estimator")],
)
def test_unknown_choices_are_invalid_requests(framework: str, model_type: str, estimator: str | None, needle: str) -> None:
    with pytest.raises(InvalidRequest, match=needle):
        estimator_class(framework, model_type, estimator)


def test_unknown_parameter_names_the_culprit_and_lists_valid_ones() -> None:
    with pytest.raises(InvalidRequest, match="n_trees") as info:
        resolve_params("sklearn", "classification", None, {"n_trees": 10}, [])
    assert "n_estimators" in info.value.detail["valid_parameters"]
    with pytest.raises(InvalidRequest, match="max_leaves_typo"):
        resolve_params("xgboost", "classification", None, {}, ["max_leaves_typo"])


def test_defaults_and_thread_pinning() -> None:
    fixed, warnings = resolve_params("lightgbm", "classification", None, {"num_leaves": 15, "n_jobs": 8}, [])
    assert fixed == {"num_leaves": 15, "random_state": 42}
    assert "n_jobs" in warnings[0]
    fixed, _ = resolve_params("sklearn", "classification", None, {"random_state": 1}, [])
    assert fixed == {"random_state": 1}
    fixed, _ = resolve_params("sklearn", "classification", None, {}, ["random_state"])
    assert "random_state" not in fixed  # tuned, so not fixed
    assert build_estimator("sklearn", "classification", None, {"n_jobs": 4}).n_jobs == 1
    assert build_estimator("xgboost", "regression", None, {"max_depth": 3}).get_params()["n_jobs"] == 1
    assert build_estimator("lightgbm", "classification", None, {}).get_params()["n_jobs"] == 1
