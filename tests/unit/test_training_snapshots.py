"""Snapshot pins of training: request validation, lineage tags, and the as-of job's dtypes (pure logic)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from asgard_ray import lineage
from asgard_ray.config import Settings
from asgard_ray.features.retrieval import ROW, AsOfRetrievalJob, ViewRead, _lookup
from asgard_ray.features.asof import build_asof_index
from asgard_ray.training.schemas import MAX_SNAPSHOT_PINS, TrainRequest, TrainResponse


def body(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "experiment_name": "e",
        "model_name": "m",
        "data_source": {"feature_views": ["v"], "entities": {"customer_id": [1, 2]}, "target_column": "churned"},
    }
    data.update(overrides)
    return data


def test_as_of_snapshot_takes_int64_ids_by_table_name() -> None:
    pins = {"customer_aggregates": 4358187011244383519, "t_2": -(2**63)}
    assert TrainRequest.model_validate(body(as_of_snapshot=pins)).as_of_snapshot == pins
    assert TrainRequest.model_validate(body()).as_of_snapshot is None


@pytest.mark.parametrize(
    "bad",
    [
        {"bad-name": 1},
        {"gold.t": 1},
        {"": 1},
        {"t": True},
        {"t": 1.0},
        {"t": "1"},
        {"t": None},
        {"t": 2**63},
        ["t"],
        {f"t{i}": i for i in range(MAX_SNAPSHOT_PINS + 1)},
    ],
)
def test_bad_as_of_snapshot_is_refused(bad: Any) -> None:
    with pytest.raises(ValidationError, match="as_of_snapshot"):
        TrainRequest.model_validate(body(as_of_snapshot=bad))


def test_snapshot_tags_round_trip() -> None:
    tags = lineage.gold_snapshot_tags({"customer_aggregates": 42, "folder_table": None})
    assert tags["asgard.gold.customer_aggregates.snapshot_id"] == "42"
    assert "asgard.gold.folder_table.snapshot_id" not in tags  # a Parquet folder has no snapshot id
    assert json.loads(tags[lineage.TAG_GOLD_SNAPSHOTS]) == {"customer_aggregates": 42, "folder_table": None}
    noise = {"asgard.gold.x.snapshot_idx": "1", "asgard.gold.bad-name.snapshot_id": "2", "asgard.gold.y.snapshot_id": "abc"}
    assert lineage.snapshots_from_tags({**tags, **noise, lineage.TAG_GOLD_SNAPSHOT_REF: "asgard-m-v1"}) == {"customer_aggregates": 42}
    assert lineage.gold_snapshot_tags({}) == {}


def test_response_carries_the_snapshots() -> None:
    fields = TrainResponse.model_fields
    assert "feature_snapshots" in fields and fields["feature_snapshots"].default_factory is not None


def _job(entities: pd.DataFrame, table: pd.DataFrame, ttl: float | None = None) -> AsOfRetrievalJob:
    read = ViewRead("v", "t", "iceberg", ["customer_id"], "event_timestamp", ["orders", "spend", "churned"], ttl)
    job = AsOfRetrievalJob(Settings.model_construct(), entities, [read])
    job._indexes = [build_asof_index(table, ["customer_id"], "event_timestamp", read.columns, ttl)]
    return job


TABLE = pd.DataFrame(
    {
        "customer_id": np.array([1, 1, 2], dtype=np.int64),
        "event_timestamp": pd.to_datetime(["2025-01-01", "2025-02-01", "2025-01-01"], utc=True),
        "orders": np.array([3, 4, 9], dtype=np.int64),
        "spend": [1.5, 2.5, 9.5],
        "churned": np.array([0, 1, 0], dtype=np.int64),
    }
)


def entities(ids: list[int], stamps: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame({"customer_id": np.array(ids, dtype=np.int64), "event_timestamp": pd.to_datetime(stamps, utc=True)})
    frame[ROW] = np.arange(len(frame), dtype=np.int64)
    return frame


def test_as_of_values_keep_integers_when_every_row_finds_one() -> None:
    job = _job(entities([1, 1, 2], ["2025-01-15", "2025-03-01", "2025-01-01"]), TABLE)
    df = job.to_df()
    assert df["orders"].tolist() == [3, 4, 9] and str(df["orders"].dtype) == "int64"
    assert df["churned"].tolist() == [0, 1, 0] and df[ROW].tolist() == [0, 1, 2]
    assert job._float_columns() == frozenset()


def test_integer_columns_become_float_when_some_row_finds_none() -> None:
    ents = entities([1, 3, 2], ["2025-01-15", "2025-03-01", "2024-12-01"])  # unknown id, and before the first row
    job = _job(ents, TABLE)
    df = job.to_df()
    assert str(df["orders"].dtype) == "float64" and df["orders"].isna().tolist() == [False, True, True]
    assert job._float_columns() == frozenset({"orders", "churned"})
    # a Ray block whose rows all find a value is cast the same way, so every block has one schema
    block = _lookup(ents.iloc[:1], job.indexes(), job._float_columns())
    assert str(block["orders"].dtype) == "float64" and str(block["spend"].dtype) == "float64"


def test_ttl_drops_values_older_than_the_view_allows() -> None:
    job = _job(entities([1, 2], ["2025-02-03", "2025-02-03"]), TABLE, ttl=7 * 86400)
    df = job.to_df()
    assert df["orders"].tolist()[0] == 4 and np.isnan(df["orders"].tolist()[1])  # customer 2's row is a month old
