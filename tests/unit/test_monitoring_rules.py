"""Alert rules and request validation: the seed's thresholds with the right direction per metric."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from asgard_ray.monitoring.rules import AlertRule, effective_rules, evaluate
from asgard_ray.monitoring.schemas import ALLOWED_METRIC_TYPES, HistoryRequest, MonitoringRequest, format_ts, parse_ts

DEFAULTS = effective_rules(None, None)


def test_seed_example_alerts_on_drift_score_with_the_seed_message() -> None:
    alerts = evaluate("prediction_drift", {"drift_score": 0.15, "psi": 0.08, "js_divergence": 0.12}, DEFAULTS)
    assert "drift_score drift detected: 0.150" in alerts
    assert any(a.startswith("js_divergence ") for a in alerts)
    assert not any(a.startswith("psi ") for a in alerts)  # 0.08 is under 0.1


@pytest.mark.parametrize(("value", "alerts"), [(0.5, False), (0.2, False), (0.05, False), (0.01, True), (1e-9, True)])
def test_p_values_alert_below_threshold_not_above(value: float, alerts: bool) -> None:
    out = evaluate("feature_drift", {"ks_pvalue": value, "total_orders.ks_pvalue": value}, DEFAULTS)
    assert bool(out) is alerts
    if alerts:
        assert "p-value" in out[0] and "< 0.05" in out[0]


def test_distances_missing_data_and_accuracy_follow_the_seed_thresholds() -> None:
    assert evaluate("feature_drift", {"total_orders.psi": 0.11}, DEFAULTS) == ["total_orders.psi drift detected: 0.110"]
    assert evaluate("feature_drift", {"total_orders.wasserstein_norm": 0.09}, DEFAULTS) == []
    assert evaluate("data_quality", {"missing_rate": 0.06}, DEFAULTS)[0].startswith("missing_rate missing data detected")
    assert evaluate("data_quality", {"missing_rate": 0.05}, DEFAULTS) == []
    assert evaluate("model_performance", {"accuracy": 0.69}, DEFAULTS)[0].startswith("accuracy performance below")
    assert evaluate("model_performance", {"accuracy": 0.91, "roc_auc": 0.8}, DEFAULTS) == []
    assert evaluate("data_quality", {"schema_mismatch": 1}, DEFAULTS)
    # a p-value whose name also says drift is judged as a p-value (specific rules first)
    assert evaluate("prediction_drift", {"drift_pvalue": 0.5}, DEFAULTS) == []
    # metrics without a rule never alert
    assert evaluate("custom", {"latency_ms": 250.0, "rows": 1e6}, DEFAULTS) == []


def test_rules_override_per_model_then_global_then_default() -> None:
    global_rules = [AlertRule(name="drift", threshold=0.2)]
    model_rules = [AlertRule(name="latency", patterns=["latency_ms"], op="gt", threshold=100),
                   AlertRule(name="p_value", threshold=0.01)]
    rules = effective_rules(model_rules, global_rules)
    assert evaluate("prediction_drift", {"psi": 0.15}, rules) == []  # global raised drift to 0.2
    assert evaluate("prediction_drift", {"psi": 0.25}, rules)
    assert evaluate("custom", {"latency_ms": 250.0}, rules) == ["latency_ms above threshold: 250.000 (> 100)"]
    assert evaluate("feature_drift", {"ks_pvalue": 0.03}, rules) == []
    assert evaluate("feature_drift", {"ks_pvalue": 0.001}, rules)
    disabled = effective_rules([AlertRule(name="missing_data", enabled=False)], None)
    assert evaluate("data_quality", {"missing_rate": 0.9}, disabled) == []


def test_metric_types_are_validated_with_the_allowed_list() -> None:
    with pytest.raises(ValidationError) as err:
        MonitoringRequest(model_name="m", model_version="1", metric_type="latency", metrics={"x": 1.0})
    for allowed in ALLOWED_METRIC_TYPES:
        assert allowed in str(err.value)


@pytest.mark.parametrize("metrics", [{}, {"x": "high"}, {"x": True}, {"x": None}, {"x": [1]}, {"x": float("nan")}])
def test_empty_or_non_numeric_metrics_are_rejected(metrics: dict) -> None:
    with pytest.raises(ValidationError):
        MonitoringRequest(model_name="m", model_version="1", metric_type="custom", metrics=metrics)


def test_model_version_may_be_a_number_and_names_are_checked() -> None:
    req = MonitoringRequest(model_name="churn_predictor", model_version=3, metric_type="custom", metrics={"x": 1})
    assert req.model_version == "3" and req.metrics == {"x": 1.0}
    with pytest.raises(ValidationError):
        MonitoringRequest(model_name="../etc", model_version="1", metric_type="custom", metrics={"x": 1})


def test_timezone_aware_dates_z_and_offsets() -> None:
    q = HistoryRequest(model_name="m", start_date="2025-10-01T00:00:00Z", end_date="2025-10-17T23:59:59+02:00")
    assert q.start_date is not None and q.start_date.utcoffset().total_seconds() == 0
    assert format_ts(q.end_date) == "2025-10-17T21:59:59.000000Z"
    assert parse_ts("2025-10-01T00:00:00") == parse_ts("2025-10-01T00:00:00Z")  # naive means UTC
    with pytest.raises(ValidationError, match="ISO-8601"):
        HistoryRequest(model_name="m", start_date="yesterday")
    with pytest.raises(ValidationError, match="after end_date"):
        HistoryRequest(model_name="m", start_date="2025-10-02T00:00:00Z", end_date="2025-10-01T00:00:00Z")


@pytest.mark.parametrize("threshold", ["NaN", "Infinity", "-Infinity"])
def test_rules_refuse_non_finite_thresholds(threshold: str) -> None:
    from asgard_ray.monitoring.rules import RuleSet

    with pytest.raises(ValidationError, match="finite"):
        RuleSet.model_validate_json(f'{{"rules": [{{"name": "drift", "threshold": {threshold}}}]}}')


@pytest.mark.parametrize("value", [12345, 1.5, True, "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+01:00"])
def test_history_dates_outside_what_can_be_stored_are_422_not_500(value: object) -> None:
    with pytest.raises(ValidationError) as err:
        HistoryRequest(model_name="m", start_date=value)
    assert "start_date" in str(err.value) and ("ISO-8601" in str(err.value) or "outside the range" in str(err.value))


def _nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("reference_data", _nested(33), "deeper than 32"),
    ("current_data", {f"k{i}": i for i in range(10_001)}, "more than 10000 keys"),
    ("reference_data", {"blob": "x" * (1024 * 1024 + 1)}, "byte limit"),
    ("tags", {f"t{i}": "v" for i in range(101)}, "at most 100"),
    ("tags", {"k": "v" * 1001}, "at most 1000 characters"),
    ("model_name", "a..b", "no '..'"),
    ("metrics", {"psi": float("inf")}, "finite"),
])
def test_free_form_json_and_names_are_bounded(field: str, value: object, needle: str) -> None:
    body = {"model_name": "m", "model_version": "1", "metric_type": "custom", "metrics": {"x": 1.0}, field: value}
    with pytest.raises(ValidationError) as err:
        MonitoringRequest.model_validate(body)
    assert needle in str(err.value) and field in str(err.value)


def test_limits_still_accept_what_the_seed_sends() -> None:
    req = MonitoringRequest.model_validate({
        "model_name": "churn_predictor", "model_version": "1", "metric_type": "prediction_drift",
        "metrics": {"drift_score": 0.15}, "reference_data": _nested(32), "tags": {"deployment": "production"}})
    assert req.reference_data is not None and req.tags == {"deployment": "production"}


def test_a_stored_record_is_held_to_the_same_limits() -> None:
    from asgard_ray.monitoring.schemas import MonitoringRecord

    line = ('{"monitoring_id": "mon-1", "model_name": "m", "model_version": "1", "metric_type": "custom", '
            '"metrics": {"x": 1}, "alert_triggered": false, "alerts": [], "timestamp": "2026-01-01T00:00:00.000000Z", '
            '"reference_data": ' + "[" * 210 + "]" * 210 + "}")
    with pytest.raises(ValidationError):
        MonitoringRecord.model_validate_json(line)
