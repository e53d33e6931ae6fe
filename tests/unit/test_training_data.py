"""Splitting, label encoding and the tiny-data fallback (pure logic on in-memory frames)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from asgard_ray.errors import InvalidRequest
from asgard_ray.features import TrainingFrame
from asgard_ray.training.data import MIN_SPLIT_ROWS, entity_hash, prepare_data
from asgard_ray.training.schemas import SplitSpec


def make_frame(n: int, label: list | None = None, *, seed: int = 0) -> TrainingFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "customer_id": np.arange(1, n + 1),
        "event_timestamp": pd.date_range("2025-01-01", periods=n, freq="D", tz="UTC"),
        "total_orders": rng.integers(0, 20, n),
        "avg_order_value": rng.random(n) * 100,
        "churned": label if label is not None else rng.integers(0, 2, n),
    })
    return TrainingFrame(df=df, join_keys=["customer_id"], feature_columns=["total_orders", "avg_order_value"],
                         feature_views=["v"], label="churned", registry_version="r1")


def test_only_feature_columns_are_inputs_as_float() -> None:
    data = prepare_data(make_frame(100), "classification", SplitSpec())
    assert list(data.X_train.columns) == ["total_orders", "avg_order_value"]
    assert all(str(t) == "float64" for t in data.X_train.dtypes)
    assert len(data.X_train) == 80 and len(data.X_val) == 20 and data.split == "stratified"


def test_stratified_split_keeps_class_balance() -> None:
    labels = [1] * 20 + [0] * 80
    data = prepare_data(make_frame(100, labels), "classification", SplitSpec())
    assert data.y_val.sum() == 4 and data.y_train.sum() == 16


def test_time_split_validates_on_latest_rows() -> None:
    frame = make_frame(100)
    data = prepare_data(frame, "classification", SplitSpec(strategy="time", validation_fraction=0.25))
    assert data.split == "time" and len(data.X_val) == 25
    # the last 25 days are the validation rows
    assert list(data.X_val["avg_order_value"]) == list(frame.df["avg_order_value"].iloc[75:].astype(float))


def test_string_labels_are_encoded_and_decoded() -> None:
    labels = ["stay", "leave"] * 50
    data = prepare_data(make_frame(100, labels), "classification", SplitSpec())
    assert data.classes == ["leave", "stay"]
    assert set(np.unique(data.y_train)) == {0, 1}
    assert list(data.decode(np.array([1, 0]))) == ["stay", "leave"]


def test_tiny_data_trains_on_all_rows_with_warning() -> None:
    data = prepare_data(make_frame(5, [0, 0, 0, 0, 0]), "classification", SplitSpec())
    assert not data.has_validation and len(data.X_train) == 5 and data.split == "none"
    assert any("trained on all of them" in w for w in data.warnings)
    assert any("single class" in w for w in data.warnings)
    X, y = data.eval_set
    assert len(X) == 5 and len(y) == 5
    assert MIN_SPLIT_ROWS > 5


def test_rows_without_label_are_dropped_and_all_missing_is_422() -> None:
    frame = make_frame(30)
    frame.df["churned"] = frame.df["churned"].astype("float64")
    frame.df.loc[:4, "churned"] = np.nan
    data = prepare_data(frame, "classification", SplitSpec())
    assert len(data.X_train) + len(data.X_val) == 25 and "dropped 5" in data.warnings[0]
    frame.df["churned"] = np.nan
    with pytest.raises(InvalidRequest, match="training set is empty"):
        prepare_data(frame, "classification", SplitSpec())


def test_regression_needs_numeric_label_and_no_stratify() -> None:
    with pytest.raises(InvalidRequest, match="not numeric"):
        prepare_data(make_frame(30, ["a"] * 30), "regression", SplitSpec())
    with pytest.raises(InvalidRequest, match="stratified"):
        prepare_data(make_frame(30), "regression", SplitSpec(strategy="stratified"))
    assert prepare_data(make_frame(30), "regression", SplitSpec()).split == "random"


def test_non_numeric_feature_is_422() -> None:
    frame = make_frame(30)
    frame.df["total_orders"] = ["x"] * 30
    with pytest.raises(InvalidRequest, match="total_orders"):
        prepare_data(frame, "classification", SplitSpec())


def test_entity_hash_ignores_row_order() -> None:
    frame = make_frame(20)
    shuffled = make_frame(20)
    shuffled.df = shuffled.df.sample(frac=1, random_state=1)
    assert entity_hash(frame) == entity_hash(shuffled) and len(entity_hash(frame)) == 64
    other = make_frame(21)
    assert entity_hash(other) != entity_hash(frame)
