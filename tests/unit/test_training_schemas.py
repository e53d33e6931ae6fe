"""Training request validation and trial planning (pure logic, no Ray)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from asgard_ray.training.plan import plan_trials
from asgard_ray.training.schemas import SearchDimension, TrainRequest, metric_mode

SEED = {
    "experiment_name": "customer_churn",
    "model_name": "churn_predictor",
    "framework": "sklearn",
    "model_type": "classification",
    "data_source": {"feature_views": ["customer_features"], "entities": {"customer_id": [1, 2, 3]}, "target_column": "churned"},
    "hyperparameters": {"params": {"n_estimators": 100, "max_depth": 10}},
    "tags": {"team": "data-science"},
}


def test_seed_body_parses_with_defaults() -> None:
    request = TrainRequest.model_validate(SEED)
    assert request.framework == "sklearn" and request.async_ is False
    assert request.hyperparameters.search_space is None and request.split.strategy == "auto"
    assert TrainRequest.model_validate({**SEED, "async": True}).async_ is True


@pytest.mark.parametrize(("field", "value"), [("framework", "pytorch"), ("model_type", "clustering")])
def test_unknown_framework_or_model_type_is_rejected(field: str, value: str) -> None:
    with pytest.raises(ValidationError, match=field):
        TrainRequest.model_validate({**SEED, field: value})


def test_framework_is_case_insensitive() -> None:
    assert TrainRequest.model_validate({**SEED, "framework": "XGBoost"}).framework == "xgboost"


@pytest.mark.parametrize(
    ("dim", "needle"),
    [
        ({"type": "choice"}, "values"),
        ({"type": "uniform", "low": 1}, "low"),
        ({"type": "uniform", "low": 2, "high": 1}, "below"),
        ({"type": "loguniform", "low": 0, "high": 1}, "> 0"),
        ({"type": "randint", "low": 1.5, "high": 4}, "integer"),
        ({"type": "normal", "low": 1, "high": 2}, "type"),
    ],
)
def test_bad_search_dimensions_say_what_to_fix(dim: dict, needle: str) -> None:
    with pytest.raises(ValidationError, match=needle):
        SearchDimension.model_validate(dim)


def test_parameter_both_fixed_and_tuned_is_rejected() -> None:
    body = {**SEED, "hyperparameters": {"params": {"max_depth": 3}, "search_space": {"max_depth": {"type": "grid", "values": [2, 4]}}}}
    with pytest.raises(ValidationError, match="both fixed"):
        TrainRequest.model_validate(body)


def test_trial_plan_counts_grid_and_samples() -> None:
    def plan(hp: dict, seed: int = 42) -> tuple[list[dict], list[str]]:
        return plan_trials(TrainRequest.model_validate({**SEED, "hyperparameters": hp, "split": {"seed": seed}}))

    assert plan({"params": {}}) == ([{}], [])
    configs, warnings = plan({"params": {}, "num_trials": 5})
    assert configs == [{}] and "no search_space" in warnings[0]
    grid = {"max_depth": {"type": "grid", "values": [2, 4, 6]}}
    assert [c["max_depth"] for c in plan({"params": {}, "search_space": grid})[0]] == [2, 4, 6]
    mixed = {**grid, "min_samples_leaf": {"type": "randint", "low": 1, "high": 5}}
    configs = plan({"params": {}, "search_space": mixed, "num_trials": 2})[0]
    assert len(configs) == 6 and all(1 <= c["min_samples_leaf"] < 5 for c in configs)
    assert configs == plan({"params": {}, "search_space": mixed, "num_trials": 2})[0]  # seeded: the same draws again
    choice = {"n_estimators": {"type": "choice", "values": [5, 10]}}
    assert len(plan({"params": {}, "search_space": choice})[0]) == 4
    logu = {"learning_rate": {"type": "loguniform", "low": 0.001, "high": 0.5}}
    draws = [c["learning_rate"] for c in plan({"params": {}, "search_space": logu, "num_trials": 50})[0]]
    assert all(0.001 <= d <= 0.5 for d in draws) and draws != [c["learning_rate"] for c in plan({"params": {}, "search_space": logu, "num_trials": 50}, seed=7)[0]]


def test_metric_mode() -> None:
    assert metric_mode("roc_auc") == "max" and metric_mode("train_f1") == "max"
    assert metric_mode("rmse") == "min" and metric_mode("log_loss") == "min" and metric_mode("train_mae") == "min"
