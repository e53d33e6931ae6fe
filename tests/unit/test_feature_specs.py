"""Validation of the seed's POST /feast/features body (pure pydantic, no Feast)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from asgard_ray.features.specs import FeatureViewSpec
from tests.conftest import SEED_FEATURE_SPEC


def test_seed_body_is_valid_and_canonical_is_stable() -> None:
    a = FeatureViewSpec.model_validate(SEED_FEATURE_SPEC)
    b = FeatureViewSpec.model_validate({**SEED_FEATURE_SPEC, "tags": {}})
    assert a.canonical() == b.canonical()
    assert [f.dtype for f in a.features] == ["int64", "float64", "int64"]


def test_dtype_aliases_normalise() -> None:
    spec = FeatureViewSpec.model_validate({**SEED_FEATURE_SPEC, "features": [{"name": "x", "dtype": "Float"}]})
    assert spec.features[0].dtype == "float64"


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"features": [{"name": "x", "dtype": "decimal"}]}, "unknown dtype 'decimal'"),
        ({"features": []}, "at least 1"),
        ({"entities": []}, "at least 1"),
        ({"name": "bad name"}, "letters, digits"),
        ({"features": [{"name": "x", "dtype": "int64"}, {"name": "x", "dtype": "int64"}]}, "repeat"),
        ({"features": [{"name": "customer_id", "dtype": "int64"}]}, "entity or the timestamp"),
        ({"name": "__hidden"}, "reserved"),
        ({"surprise": 1}, "Extra inputs"),
    ],
)
def test_bad_specs_say_what_to_fix(change: dict, needle: str) -> None:
    with pytest.raises(ValidationError, match=needle):
        FeatureViewSpec.model_validate({**SEED_FEATURE_SPEC, **change})
