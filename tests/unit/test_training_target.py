"""The one rule for a training target, and the fit check, as pure logic (no Ray, no stores)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from asgard_ray.config import Settings
from asgard_ray.errors import InvalidRequest
from asgard_ray.features.retrieval import ViewRead
from asgard_ray.gold import GoldTable
from asgard_ray.runtime import Capacity, check_fits
from asgard_ray.training.target import check_classes, check_inputs, check_target

SCHEMA = pa.schema(
    [
        ("customer_id", pa.int64()),
        ("event_timestamp", pa.timestamp("us", tz="UTC")),
        ("created", pa.timestamp("us", tz="UTC")),
        ("total_orders", pa.int64()),
        ("avg_order_value", pa.float64()),
        ("segment", pa.string()),
        ("churned", pa.int64()),
        ("spend", pa.float64()),
        ("tags", pa.list_(pa.string())),
    ]
)


def reads() -> list[ViewRead]:
    table = GoldTable("customer_aggregates", "iceberg", "s3://asgard/warehouse/x", SCHEMA, 1)
    return [
        ViewRead("customer_features", "customer_aggregates", "iceberg", ["customer_id"], "event_timestamp",
                 ["total_orders", "avg_order_value"], None, "created", table)
    ]


@pytest.mark.parametrize(
    ("target", "model_type", "needle"),
    [
        ("total_orders", "regression", "is a feature of view customer_features; a model cannot be trained on its own label"),
        ("avg_order_value", "classification", "feature of view"),
        ("customer_id", "classification", "join key of view customer_features"),
        ("event_timestamp", "regression", "event timestamp"),
        ("created", "regression", "created timestamp of view customer_features"),
        ("nope", "regression", r"not a column of the source table\(s\) customer_aggregates"),
        ("segment", "regression", "regression needs a numeric target"),
        ("tags", "classification", "not a label"),
    ],
)
def test_a_target_that_cannot_be_a_label_is_refused_with_the_rule(target: str, model_type: str, needle: str) -> None:
    with pytest.raises(InvalidRequest, match=needle) as err:
        check_target(target, model_type, reads())
    assert repr(target) in err.value.message


@pytest.mark.parametrize(("target", "model_type"), [("churned", "classification"), ("churned", "regression"),
                                                     ("segment", "classification"), ("spend", "regression")])
def test_a_label_column_is_accepted(target: str, model_type: str) -> None:
    assert check_target(target, model_type, reads()) == "customer_features"


def test_inputs_never_hold_a_key_a_timestamp_or_the_label() -> None:
    check_inputs(["a", "b"], ["customer_id", "event_timestamp", "churned", None])
    with pytest.raises(InvalidRequest, match="churned"):
        check_inputs(["a", "churned"], ["customer_id", "event_timestamp", "churned"])


def test_classes_past_the_limit_or_fractional_are_refused() -> None:
    check_classes("y", [0, 1, 2], 3)
    check_classes("y", [0.0, 1.0], 3)
    with pytest.raises(InvalidRequest, match="ASGARD_MAX_CLASSES"):
        check_classes("y", list(range(4)), 3)
    with pytest.raises(InvalidRequest, match="fractional"):
        check_classes("y", [0.5, 1.0], 3)


def test_work_that_can_never_fit_the_cluster_is_refused_with_the_numbers() -> None:
    settings = Settings()
    two = Capacity(total_cpus=2, largest_node_cpus=2, nodes=1)
    check_fits(settings, [1.0, 1.0], "2 workers", "num_workers", two)
    with pytest.raises(InvalidRequest, match=r"need 2.5 CPUs at once .* the cluster has 2 CPUs on 1 node"):
        check_fits(settings, [1.25, 1.25], "2 workers x 1.25 CPU", "execution.num_workers or ASGARD_TRAIN_CPUS_PER_WORKER", two)
    with pytest.raises(InvalidRequest, match="largest node 2"):
        check_fits(settings, [3.0], "one trial", "ASGARD_TRAIN_CPUS_PER_TRIAL", Capacity(6, 2, 3))
    check_fits(settings.model_copy(update={"asgard_cluster_autoscaling": True}), [64.0], "big", "x", two)
