"""Materialization's row choice (latest per key in [start, end), ties: last stored wins) and spec matching."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from asgard_ray.features.registry import _same_spec, _with_format
from asgard_ray.features.specs import SEED_EXAMPLE, FeatureViewSpec
from asgard_ray.serving.materialize import latest_rows

START, END = datetime(2025, 7, 1, tzinfo=UTC), datetime(2025, 9, 1, tzinfo=UTC)


def _ts(*days: str) -> list[pd.Timestamp]:
    return [pd.Timestamp(d, tz="UTC") for d in days]


def test_latest_row_per_key_inside_the_window() -> None:
    df = pd.DataFrame(
        {
            "k": [1, 1, 1, 2, 2, 3],
            "ts": _ts("2025-06-30", "2025-07-15", "2025-09-01", "2025-07-01", "2025-08-31 23:59", "2025-09-02"),
            "v": [10, 11, 12, 20, 21, 30],
        }
    )
    out = latest_rows(df, ["k"], "ts", START, END).set_index("k")["v"].to_dict()
    assert out == {1: 11, 2: 21}  # start included, end excluded; key 3 has no row in the window


def test_ties_the_row_stored_last_wins() -> None:
    df = pd.DataFrame({"k": [1, 1, 1, 2], "ts": _ts("2025-08-01", "2025-08-01", "2025-07-01", "2025-08-01"), "v": [1, 2, 3, 4]})
    assert latest_rows(df, ["k"], "ts", START, END).set_index("k")["v"].to_dict() == {1: 2, 2: 4}


def test_created_timestamp_breaks_ties_before_storage_order() -> None:
    df = pd.DataFrame(
        {
            "k": [1, 1],
            "ts": _ts("2025-08-01", "2025-08-01"),
            "created": _ts("2025-08-03", "2025-08-02"),
            "v": [1, 2],
        }
    )
    assert latest_rows(df, ["k"], "ts", START, END, "created")["v"].tolist() == [1]


def test_composite_keys() -> None:
    df = pd.DataFrame({"a": [1, 1, 1], "b": ["x", "y", "x"], "ts": _ts("2025-07-02", "2025-07-03", "2025-07-04"), "v": [1, 2, 3]})
    out = latest_rows(df, ["a", "b"], "ts", START, END).set_index(["a", "b"])["v"].to_dict()
    assert out == {(1, "x"): 3, (1, "y"): 2}


def test_a_re_registration_without_format_matches_the_resolved_one() -> None:
    spec = FeatureViewSpec.model_validate(SEED_EXAMPLE)
    stored = _with_format(spec, "iceberg").canonical()
    assert _same_spec(stored, spec)
    assert _same_spec(stored, _with_format(spec, "iceberg"))
    assert not _same_spec(stored, _with_format(spec, "parquet"))  # a different format is a different spec
    other = FeatureViewSpec.model_validate({**SEED_EXAMPLE, "features": [{"name": "total_orders", "dtype": "int64"}]})
    assert not _same_spec(stored, other)
    assert not _same_spec(None, spec)
