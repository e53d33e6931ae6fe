"""Feature registration and point-in-time retrieval against a real S3 server, Feast repo and Ray."""

from __future__ import annotations

import pandas as pd
import pytest

from asgard_ray.config import Settings
from asgard_ray.errors import Conflict, InvalidRequest, NotFound
from asgard_ray.features import FeatureRegistry, FeatureViewSpec, build_training_frame
from asgard_ray.local.demo_data import customer_aggregates
from tests.conftest import SEED_FEATURE_SPEC

pytestmark = pytest.mark.integration


def test_registered_view_is_listed_and_idempotent(settings: Settings, customer_features: str) -> None:
    registry = FeatureRegistry(settings)
    names = [v.name for v in registry.list().feature_views]
    assert customer_features in names
    again = registry.register(FeatureViewSpec.model_validate(SEED_FEATURE_SPEC))
    assert again.status == "unchanged"
    assert [f.name for f in again.features] == ["total_orders", "avg_order_value", "days_since_last_order"]


def test_conflicting_spec_is_409(settings: Settings, customer_features: str) -> None:
    spec = {**SEED_FEATURE_SPEC, "features": [{"name": "total_orders", "dtype": "int64"}]}
    with pytest.raises(Conflict):
        FeatureRegistry(settings).register(FeatureViewSpec.model_validate(spec))


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"features": [{"name": "no_such_column", "dtype": "int64"}]}, "no_such_column"),
        ({"source": {"table_name": "customer_aggregates", "timestamp_field": "ts_missing"}}, "ts_missing"),
        ({"features": [{"name": "total_spend", "dtype": "bool"}]}, "total_spend"),
        ({"entities": ["account_id"]}, "account_id"),
    ],
)
def test_bad_specs_name_the_problem(settings: Settings, ray_session: None, change: dict, needle: str) -> None:
    spec = FeatureViewSpec.model_validate({**SEED_FEATURE_SPEC, "name": "bad_view", **change})
    with pytest.raises(InvalidRequest, match=needle):
        FeatureRegistry(settings).register(spec)
    with pytest.raises(NotFound):
        FeatureRegistry(settings).get("bad_view")


def test_unknown_table_is_404(settings: Settings, ray_session: None) -> None:
    spec = FeatureViewSpec.model_validate({**SEED_FEATURE_SPEC, "name": "orphan", "source": {"table_name": "nope"}})
    with pytest.raises(NotFound, match="nope"):
        FeatureRegistry(settings).register(spec)


def test_delete_then_get_is_404(settings: Settings, ray_session: None) -> None:
    registry = FeatureRegistry(settings)
    spec = FeatureViewSpec.model_validate({**SEED_FEATURE_SPEC, "name": "temporary_view"})
    assert registry.register(spec).status == "registered"
    registry.delete("temporary_view")
    with pytest.raises(NotFound):
        registry.get("temporary_view")


def test_training_frame_matches_merge_asof(settings: Settings, customer_features: str) -> None:
    ids = list(range(1, 201))
    # timestamps between, on and after snapshots, so the as-of join is really exercised
    stamps = [
        pd.Timestamp("2025-07-15", tz="UTC"), pd.Timestamp("2025-08-01", tz="UTC"),
        pd.Timestamp("2025-09-30 23:59", tz="UTC"), pd.Timestamp("2025-12-01", tz="UTC"),
    ]
    ts = [stamps[i % 4].isoformat() for i in range(len(ids))]
    frame = build_training_frame(
        settings, [customer_features], {"customer_id": ids}, event_timestamps=ts, label="churned"
    )
    assert frame.feature_columns == ["total_orders", "avg_order_value", "days_since_last_order"]
    assert frame.join_keys == ["customer_id"]
    assert "customer_id" not in frame.X.columns and "event_timestamp" not in frame.X.columns
    assert list(frame.df["customer_id"]) == ids  # input order kept

    gold = customer_aggregates().sort_values("event_timestamp")
    entity = pd.DataFrame({"customer_id": ids, "event_timestamp": pd.to_datetime(ts, utc=True)})
    entity["event_timestamp"] = entity["event_timestamp"].astype("datetime64[us, UTC]")
    expected = pd.merge_asof(
        entity.reset_index().sort_values("event_timestamp"), gold,
        on="event_timestamp", by="customer_id", direction="backward",
    ).sort_values("index")
    cols = [*frame.feature_columns, "churned"]
    pd.testing.assert_frame_equal(
        frame.df[cols].reset_index(drop=True).astype("float64"),
        expected[cols].reset_index(drop=True).astype("float64"),
    )


def test_entity_validation(settings: Settings, customer_features: str) -> None:
    with pytest.raises(InvalidRequest, match="join key"):
        build_training_frame(settings, [customer_features], {"user": [1]})
    with pytest.raises(InvalidRequest, match="null, boolean, float"):
        build_training_frame(settings, [customer_features], {"customer_id": [1, None]})
    with pytest.raises(InvalidRequest, match="churn_flag"):
        build_training_frame(settings, [customer_features], {"customer_id": [1]}, label="churn_flag")
    with pytest.raises(NotFound):
        build_training_frame(settings, ["nope"], {"customer_id": [1]})
