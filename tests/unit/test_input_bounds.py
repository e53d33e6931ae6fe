"""Hostile numbers, ids, dates, names and tags are refused at the edge (pure pydantic, no Ray).

Each case is one that used to reach pandas, Arrow, Feast or Ray Tune and end in a 500; now the
request model refuses it with a message that names the field and what to fix.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from pydantic import ValidationError

from asgard_ray.features.specs import SEED_EXAMPLE, FeatureViewSpec
from asgard_ray.lineage import RESERVED_TAG_PREFIX, check_user_tags
from asgard_ray.registry.schemas import AliasRequest, RegisterModelRequest
from asgard_ray.scoring.schemas import BatchScoreRequest
from asgard_ray.training.schemas import SearchDimension, TrainRequest
from asgard_ray.types import check_model_name

TRAIN: dict[str, Any] = {
    "experiment_name": "customer_churn",
    "model_name": "churn_predictor",
    "framework": "sklearn",
    "model_type": "classification",
    "data_source": {"feature_views": ["customer_features"], "entities": {"customer_id": [1, 2, 3]}, "target_column": "churned"},
    "hyperparameters": {"params": {"n_estimators": 100, "max_depth": 10, "random_state": 42}},
}
SCORE: dict[str, Any] = {
    "model_name": "churn_predictor",
    "model_version": "1",
    "feature_views": ["customer_features"],
    "entities_df": {"customer_id": [1, 2, 3]},
    "output_path": "s3://my-bucket/predictions/x.parquet",
}


def _json(body: dict[str, Any]) -> Any:
    """The body as the API receives it: Python's json accepts NaN and Infinity literals."""
    return json.loads(json.dumps(body))


def _refused(model: type, body: dict[str, Any], *needles: str) -> str:
    with pytest.raises(ValidationError) as info:
        model.model_validate(_json(body))
    text = str(info.value)
    for needle in needles:
        assert needle in text, text
    return text


def _with(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    body = json.loads(json.dumps(base))
    *parents, leaf = path.split(".")
    node = body
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return body


def test_seed_bodies_still_parse() -> None:
    assert TrainRequest.model_validate(TRAIN).model_name == "churn_predictor"
    assert BatchScoreRequest.model_validate(SCORE).entities_df == {"customer_id": [1, 2, 3]}
    assert FeatureViewSpec.model_validate({**SEED_EXAMPLE, "ttl_seconds": 86400}).ttl_seconds == 86400


# --- NaN and Infinity ----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_hyperparameter_is_refused(bad: float) -> None:
    _refused(TrainRequest, _with(TRAIN, "hyperparameters.params.min_impurity_decrease", bad), "params", "NaN or Infinity")


def test_randint_with_infinite_high_is_refused() -> None:
    body = _with(TRAIN, "hyperparameters", {"search_space": {"max_depth": {"type": "randint", "low": 3, "high": math.inf}}})
    _refused(TrainRequest, body, "high", "finite")


@pytest.mark.parametrize("field", ["low", "high"])
def test_non_finite_search_bounds_are_refused(field: str) -> None:
    dim = {"type": "uniform", "low": 0.1, "high": 0.5, field: math.nan}
    _refused(SearchDimension, dim, field, "finite")


def test_non_finite_choice_value_is_refused() -> None:
    _refused(SearchDimension, {"type": "choice", "values": [1, math.inf]}, "values", "NaN or Infinity")


def test_non_finite_split_fraction_is_refused() -> None:
    _refused(TrainRequest, _with(TRAIN, "split", {"validation_fraction": math.nan}), "validation_fraction")


# --- integers beyond int64 -----------------------------------------------------------------------


def test_training_entity_id_beyond_int64_is_refused() -> None:
    body = _with(TRAIN, "data_source.entities", {"customer_id": [1, 2**64]})
    _refused(TrainRequest, body, "customer_id[1]", "64-bit")


def test_scoring_entity_id_beyond_int64_is_refused() -> None:
    _refused(BatchScoreRequest, {**SCORE, "entities_df": {"customer_id": [2**64]}}, "customer_id[0]", "64-bit")
    _refused(BatchScoreRequest, {**SCORE, "entities_df": {"customer_id": [-(2**63) - 1]}}, "64-bit")


def test_entity_ids_at_the_int64_edges_are_accepted() -> None:
    body = {**SCORE, "entities_df": {"customer_id": [2**63 - 1, -(2**63)]}}
    assert BatchScoreRequest.model_validate(body).entities_df == {"customer_id": [2**63 - 1, -(2**63)]}


def test_huge_integer_hyperparameter_is_refused() -> None:
    _refused(TrainRequest, _with(TRAIN, "hyperparameters.params.min_samples_split", 2**70), "64 bits")


def test_randint_beyond_int64_is_refused() -> None:
    _refused(SearchDimension, {"type": "randint", "low": 1, "high": 1e30}, "64-bit")


@pytest.mark.parametrize("seed", [-1, 2**31, 2**64])
def test_split_seed_out_of_range_is_refused(seed: int) -> None:
    _refused(TrainRequest, _with(TRAIN, "split", {"seed": seed}), "seed")


@pytest.mark.parametrize("version", [True, 2**64, "99999999999999999999", "x" * 300])
def test_scoring_model_version_out_of_range_is_refused(version: Any) -> None:
    _refused(BatchScoreRequest, {**SCORE, "model_version": version}, "model_version")


@pytest.mark.parametrize("version", [True, 2**64, "one", -1, 1.5])
def test_alias_version_must_be_a_version_number(version: Any) -> None:
    _refused(AliasRequest, {"version": version}, "version")


def test_ttl_of_1e20_seconds_is_refused() -> None:
    _refused(FeatureViewSpec, {**SEED_EXAMPLE, "ttl_seconds": 1e20}, "ttl_seconds")


# --- dates ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("stamp", ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+01:00"])
def test_dates_outside_what_python_and_arrow_hold_are_refused(stamp: str) -> None:
    body = _with(TRAIN, "data_source.event_timestamps", [stamp, "2025-01-01T00:00:00Z", "2025-01-01T00:00:00Z"])
    _refused(TrainRequest, body, "event_timestamps[0]", "outside the range")
    score = {**SCORE, "entities_df": {"customer_id": [1], "event_timestamp": [stamp]}}
    _refused(BatchScoreRequest, score, "event_timestamp[0]")


@pytest.mark.parametrize("stamp", [12345, 1.5, None, "not a time"])
def test_event_timestamps_must_be_iso_times(stamp: Any) -> None:
    body = _with(TRAIN, "data_source.entities", {"customer_id": [1], "event_timestamp": [stamp]})
    _refused(TrainRequest, body, "event_timestamp[0]")


def test_in_range_event_timestamps_are_accepted() -> None:
    body = {**SCORE, "entities_df": {"customer_id": [1, 2], "event_timestamp": ["2025-10-17T00:00:00Z", "2025-10-17T01:00:00+02:00"]}}
    assert BatchScoreRequest.model_validate(body).entities_df is not None


# --- one ModelName ---------------------------------------------------------------------------------

NAMES = ["churn_predictor", "a", "model.v2-final", "A" * 128, "A" * 129, "a b", "../x", "a..b", "-lead", "x'y",
         'x"y', "x\\y", "ü", "", "name/with/slash", "%2e%2e", "a\nb"]


@pytest.mark.parametrize("name", NAMES)
def test_every_schema_agrees_on_model_names(name: str) -> None:
    try:
        check_model_name(name)
        expected = True
    except ValueError:
        expected = False
    outcomes = []
    for model, body in ((RegisterModelRequest, {"model_name": name, "run_id": "abc"}),
                        (BatchScoreRequest, {**SCORE, "model_name": name}),
                        (TrainRequest, {**TRAIN, "model_name": name})):
        try:
            model.model_validate(body)
            outcomes.append(True)
        except ValidationError as exc:
            assert "model_name" in str(exc)
            outcomes.append(False)
    assert outcomes == [expected] * 3, (name, outcomes)


# --- lineage tags are the platform's --------------------------------------------------------------


@pytest.mark.parametrize("key", ["asgard.feature_columns", "ASGARD.label", " asgard.framework", "asgard.anything"])
def test_user_tags_cannot_use_the_reserved_prefix(key: str) -> None:
    _refused(RegisterModelRequest, {"model_name": "m", "run_id": "r", "tags": {key: "x"}}, RESERVED_TAG_PREFIX)
    _refused(TrainRequest, {**TRAIN, "tags": {key: "x"}}, RESERVED_TAG_PREFIX)
    _refused(FeatureViewSpec, {**SEED_EXAMPLE, "tags": {key: "x"}}, RESERVED_TAG_PREFIX)


def test_ordinary_tags_pass_and_oversized_tags_do_not() -> None:
    assert check_user_tags({"team": "ds", "asgardian": "ok"}) == {"team": "ds", "asgardian": "ok"}
    with pytest.raises(ValueError, match="at most"):
        check_user_tags({f"k{i}": "v" for i in range(101)})
    with pytest.raises(ValueError, match="longer than"):
        check_user_tags({"k": "v" * 5001})
