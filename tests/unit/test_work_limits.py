"""Training work limits: the trial cap after the grid product and bounds on known estimator parameters."""

from __future__ import annotations

from typing import Any

import pytest

from asgard_ray.config import Settings
from asgard_ray.errors import InvalidRequest
from asgard_ray.training.estimators import check_param_bounds
from asgard_ray.training.plan import validate_request
from asgard_ray.training.schemas import SearchDimension, TrainRequest
from asgard_ray.training.trials import check_trial_cap, count_trials

DEFAULTS = Settings.model_construct()

BASE: dict[str, Any] = {
    "experiment_name": "customer_churn",
    "model_name": "churn_predictor",
    "data_source": {"feature_views": ["customer_features"], "entities": {"customer_id": [1, 2, 3]}, "target_column": "churned"},
}


def _request(hp: dict[str, Any], framework: str = "sklearn") -> TrainRequest:
    return TrainRequest.model_validate({**BASE, "framework": framework, "hyperparameters": hp})


def _space(**dims: dict[str, Any]) -> dict[str, SearchDimension]:
    return {k: SearchDimension.model_validate(v) for k, v in dims.items()}


def test_a_1000_by_1000_grid_is_refused_naming_the_product_and_the_cap() -> None:
    grid = list(range(1, 1001))
    request = _request({"search_space": {"min_samples_leaf": {"type": "grid", "values": grid},
                                         "min_samples_split": {"type": "grid", "values": [v + 1 for v in grid]}}})
    with pytest.raises(InvalidRequest) as info:
        validate_request(request, DEFAULTS)
    message = info.value.message
    assert "1000 x 1000" in message and "1,000,000" in message
    assert f"{DEFAULTS.asgard_max_trials:,}" in message and "ASGARD_MAX_TRIALS" in message


def test_samples_multiply_the_grid() -> None:
    space = _space(max_depth={"type": "grid", "values": [2, 4, 6]}, min_samples_leaf={"type": "randint", "low": 1, "high": 5})
    assert count_trials(space, 10) == (10, [3], 30)
    assert check_trial_cap(space, 10, Settings.model_construct(asgard_max_trials=30)) == 30
    with pytest.raises(InvalidRequest, match="10 x 3 = 30"):
        check_trial_cap(space, 10, Settings.model_construct(asgard_max_trials=29))


def test_a_small_grid_under_the_cap_passes() -> None:
    request = _request({"search_space": {"max_depth": {"type": "grid", "values": [2, 4, 8]}}})
    fixed, _ = validate_request(request, DEFAULTS)
    assert fixed["random_state"] == 42


@pytest.mark.parametrize(
    ("framework", "params", "needle"),
    [
        ("sklearn", {"n_estimators": 10**6}, "n_estimators"),
        ("sklearn", {"n_estimators": 0}, "n_estimators"),
        ("sklearn", {"max_depth": 10_000}, "max_depth"),
        ("sklearn", {"learning_rate": 0.0}, "learning_rate"),
        ("sklearn", {"random_state": -5}, "random_state"),
        ("sklearn", {"n_estimators": "100"}, "n_estimators"),
        ("xgboost", {"n_estimators": 100, "num_parallel_tree": 1000}, "num_parallel_tree"),
        ("xgboost", {"max_bin": 10**7}, "max_bin"),
        ("xgboost", {"learning_rate": 1.5}, "learning_rate"),
        ("lightgbm", {"num_leaves": 10**6}, "num_leaves"),
        ("lightgbm", {"subsample": 0}, "subsample"),
    ],
)
def test_out_of_range_parameters_are_refused(framework: str, params: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidRequest, match=needle):
        check_param_bounds(framework, params, None, DEFAULTS)


@pytest.mark.parametrize(
    ("framework", "dims", "needle"),
    [
        ("sklearn", {"n_estimators": {"type": "randint", "low": 10, "high": 10**7}}, "search_space.n_estimators"),
        ("sklearn", {"max_depth": {"type": "choice", "values": [3, 5, 10_000]}}, "search_space.max_depth"),
        ("lightgbm", {"learning_rate": {"type": "loguniform", "low": 1e-3, "high": 5.0}}, "search_space.learning_rate"),
        ("xgboost", {"n_estimators": {"type": "grid", "values": [100, 4000]}, "num_parallel_tree": {"type": "grid", "values": [1, 2]}},
         "num_parallel_tree"),
    ],
)
def test_out_of_range_search_dimensions_are_refused(framework: str, dims: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidRequest, match=needle):
        check_param_bounds(framework, {}, _space(**dims), DEFAULTS)


@pytest.mark.parametrize(
    ("framework", "params"),
    [
        ("sklearn", {"n_estimators": 100, "max_depth": None, "learning_rate": 1.0, "random_state": 42}),
        ("xgboost", {"n_estimators": 200, "max_depth": 0, "learning_rate": 0.1, "subsample": 0.8}),
        ("lightgbm", {"n_estimators": 200, "max_depth": -1, "num_leaves": 31, "learning_rate": 0.05}),
    ],
)
def test_ordinary_parameters_pass(framework: str, params: dict[str, Any]) -> None:
    check_param_bounds(framework, params, None, DEFAULTS)


def test_limits_follow_the_settings() -> None:
    roomy = Settings.model_construct(asgard_max_estimators=20_000)
    check_param_bounds("sklearn", {"n_estimators": 10_000}, None, roomy)
    with pytest.raises(InvalidRequest, match="ASGARD_MAX_ESTIMATORS"):
        check_param_bounds("sklearn", {"n_estimators": 10_000}, None, DEFAULTS)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(InvalidRequest) as info:
        check_param_bounds("lightgbm", {"n_estimators": 10**9, "num_leaves": 10**9}, None, DEFAULTS)
    assert len(info.value.detail["problems"]) == 2  # type: ignore[index]


def test_settings_have_safe_defaults() -> None:
    s = DEFAULTS
    assert (s.asgard_max_trials, s.asgard_max_estimators, s.asgard_max_tree_depth, s.asgard_max_leaves, s.asgard_max_bins) == (
        200, 5000, 64, 4096, 1024)
