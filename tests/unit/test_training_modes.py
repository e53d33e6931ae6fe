"""Mode selection: in-memory vs data-parallel, by rows against the setting or as the request asks; sklearn refusals."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from asgard_ray.config import Settings
from asgard_ray.errors import InvalidRequest
from asgard_ray.training.modes import choose_mode, entity_rows, sample_entities
from asgard_ray.training.plan import execution_tags
from asgard_ray.training.schemas import TrainRequest


def settings(**kw: Any) -> Settings:
    base = {"asgard_train_distributed_rows": 100, "asgard_train_max_workers": 4, "asgard_train_default_workers": 2}
    return Settings.model_construct(**{**base, **kw})


def request(rows: int, framework: str = "xgboost", **execution: Any) -> TrainRequest:
    ids = list(range(rows))
    return TrainRequest.model_validate({
        "experiment_name": "e", "model_name": "m", "framework": framework,
        "data_source": {"feature_views": ["fv"], "entities": {"customer_id": ids}, "target_column": "y",
                        "event_timestamps": ["2024-01-01T00:00:00Z"] * rows},
        "execution": execution,
    })


@pytest.mark.parametrize("framework", ["xgboost", "lightgbm"])
def test_boosters_go_data_parallel_at_the_row_setting(framework: str) -> None:
    below = choose_mode(request(99, framework), settings())
    at = choose_mode(request(100, framework), settings())
    assert below.mode == "in_memory" and below.num_workers == 1 and below.rows == 99
    assert at.mode == "distributed" and at.num_workers == 2 and "ASGARD_TRAIN_DISTRIBUTED_ROWS" in at.reason


def test_explicit_modes_win_over_rows() -> None:
    plan = choose_mode(request(5, mode="distributed", num_workers=3), settings())
    assert (plan.mode, plan.num_workers) == ("distributed", 3)
    assert choose_mode(request(500, mode="in_memory"), settings()).mode == "in_memory"
    assert choose_mode(request(5, num_workers=2), settings()).mode == "distributed"


def test_workers_are_bounded_by_the_setting() -> None:
    with pytest.raises(InvalidRequest, match="ASGARD_TRAIN_MAX_WORKERS"):
        choose_mode(request(5, mode="distributed", num_workers=5), settings())
    with pytest.raises(ValidationError):
        request(5, num_workers=0)


def test_sklearn_past_the_limit_is_refused_with_the_alternatives() -> None:
    with pytest.raises(InvalidRequest) as err:
        choose_mode(request(100, "sklearn"), settings())
    message = str(err.value)
    assert "xgboost or lightgbm" in message and "sample_rows" in message and "ASGARD_TRAIN_DISTRIBUTED_ROWS" in message
    assert err.value.detail["alternatives"] == ["xgboost", "lightgbm", "execution.sample_rows"]
    assert choose_mode(request(99, "sklearn"), settings()).mode == "in_memory"
    for bad in ({"mode": "distributed"}, {"num_workers": 2}):
        with pytest.raises(InvalidRequest, match="data-parallel"):
            choose_mode(request(5, "sklearn", **bad), settings())


def test_sample_rows_trains_in_memory_on_a_recorded_seeded_sample() -> None:
    req = request(500, "sklearn", sample_rows=50)
    plan = choose_mode(req, settings())
    assert (plan.mode, plan.sample_rows, plan.rows) == ("in_memory", 50, 500)
    entities, stamps = sample_entities(req, plan)
    assert len(entities["customer_id"]) == 50 == len(stamps or [])
    assert entities == sample_entities(req, plan)[0]  # seeded: the same request samples the same rows
    assert len(set(entities["customer_id"])) == 50
    tags = execution_tags(plan.describe())
    assert tags["asgard.sample_rows"] == "50" and tags["asgard.sampled_from_rows"] == "500"
    assert tags["asgard.execution_mode"] == "in_memory"


def test_sample_rows_limits() -> None:
    with pytest.raises(InvalidRequest, match="at or over the in-memory limit"):
        choose_mode(request(500, "sklearn", sample_rows=100), settings())
    with pytest.raises(InvalidRequest, match="leave it out for mode distributed"):
        choose_mode(request(500, sample_rows=10, mode="distributed"), settings())
    small = choose_mode(request(20, "sklearn", sample_rows=50), settings())
    assert small.sample_rows is None  # fewer rows than the sample: all of them, nothing to record
    assert sample_entities(request(20, "sklearn", sample_rows=50), small)[0]["customer_id"] == list(range(20))


def test_entity_rows_counts_the_join_key_not_timestamps() -> None:
    req = TrainRequest.model_validate({
        "experiment_name": "e", "model_name": "m",
        "data_source": {"feature_views": ["fv"], "target_column": "y",
                        "entities": {"event_timestamp": ["2024-01-01T00:00:00Z"] * 3, "customer_id": [1, 2, 3]}},
    })
    assert entity_rows(req) == 3
    assert execution_tags(choose_mode(req, settings()).describe())["asgard.num_workers"] == "1"
