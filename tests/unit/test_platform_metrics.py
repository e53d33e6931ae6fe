"""``asgard_ray.metrics`` outside Ray, and the mapping of monitoring records onto its series (pure logic, no Ray).

The live export (Ray's metrics agent scraped by a real Prometheus) is tested in ``tests/production``.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from asgard_ray import metrics
from asgard_ray.monitoring.rules import DEFAULT_RULES, evaluate, fired
from asgard_ray.monitoring.telemetry import feature_metric


def test_importing_the_module_imports_no_ray() -> None:
    code = "import sys, asgard_ray.metrics; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_every_function_is_a_quiet_no_op_outside_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    # outside Ray: this process has not imported it (another test in the session may have started it)
    monkeypatch.delitem(sys.modules, "ray", raising=False)
    monkeypatch.setattr(metrics, "_metrics", {})
    monkeypatch.setattr(metrics, "_gauges", {})
    metrics.prediction("m", "1", "/mlops/serve", 0.01, rows=2)
    metrics.prediction("m", "none", "/predict/{model}", 0.01, rows=0, ok=False)
    metrics.drift_score("m", "1", "f", "psi", 0.3)
    metrics.alert("m", "drift", 2)
    metrics.job_state("training", "running")
    metrics.queue_depth("training", 4)
    metrics.wal_backlog(0)
    assert metrics._metrics == {} and metrics._gauges == {}  # nothing made, nothing remembered


def test_series_names_labels_and_prometheus_names() -> None:
    valid = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
    for name, (kind, description, labels) in metrics.SERIES.items():
        assert name.startswith("asgard_") and valid.match(name), name
        assert kind in ("counter", "gauge", "histogram") and description
        assert all(valid.match(label) for label in labels), labels
        assert not name.endswith("_total"), name  # the export appends it to counters
    assert metrics.prometheus_name("asgard_prediction_requests") == "ray_asgard_prediction_requests_total"
    assert metrics.prometheus_name("asgard_drift_score") == "ray_asgard_drift_score"
    assert list(metrics.LATENCY_BOUNDARIES_S) == sorted(metrics.LATENCY_BOUNDARIES_S)


@pytest.mark.parametrize(
    ("metric_type", "name", "expected"),
    [
        ("feature_drift", "total_orders.psi", ("total_orders", "psi")),
        ("feature_drift", "a.b.ks_pvalue", ("a.b", "ks_pvalue")),
        ("feature_drift", "drift_score", ("all", "drift_score")),
        ("prediction_drift", "psi", ("prediction", "psi")),
        ("prediction_drift", "drift_score", ("prediction", "drift_score")),
    ],
)
def test_drift_metric_names_map_to_feature_and_metric(metric_type: str, name: str, expected: tuple[str, str]) -> None:
    assert feature_metric(metric_type, name) == expected


def test_fired_names_the_rule_of_each_alert_and_evaluate_keeps_the_messages() -> None:
    values = {"drift_score": 0.15, "psi": 0.08, "ks_pvalue": 0.01, "x.missing_rate": 0.2, "accuracy": 0.9}
    breaches = fired("prediction_drift", values, DEFAULT_RULES)
    assert [rule for rule, _ in breaches] == ["drift", "p_value", "missing_data"]
    assert evaluate("prediction_drift", values, DEFAULT_RULES) == [message for _, message in breaches]


def test_a_rebuilt_actor_sets_the_newest_drift_scores_again_and_counts_no_alert(monkeypatch: pytest.MonkeyPatch) -> None:
    from asgard_ray.monitoring import telemetry
    from asgard_ray.monitoring.schemas import MonitoringRecord

    def record(mid: str, ts: str, metric_type: str, metrics_: dict[str, float], version: str = "1") -> MonitoringRecord:
        return MonitoringRecord(
            monitoring_id=mid, model_name="m", model_version=version, metric_type=metric_type, metrics=metrics_,
            alert_triggered=True, alerts=["x"], timestamp=ts,
        )  # fmt: skip

    scores: list[tuple[str, str, str, str, float]] = []
    alerts: list[tuple[str, str, int]] = []
    monkeypatch.setattr(metrics, "drift_score", lambda *a: scores.append(a))
    monkeypatch.setattr(metrics, "alert", lambda *a: alerts.append(a))
    held = [
        record("a", "2026-01-01T00:00:00Z", "feature_drift", {"f.psi": 0.5}),
        record("b", "2026-01-02T00:00:00Z", "feature_drift", {"f.psi": 0.2}),  # newer: this one counts
        record("c", "2026-01-01T00:00:00Z", "prediction_drift", {"psi": 0.3}),
        record("d", "2026-01-03T00:00:00Z", "data_quality", {"f.missing_rate": 0.9}),  # not drift
        record("e", "2026-01-01T00:00:00Z", "feature_drift", {"f.psi": 0.7}, version="2"),
    ]
    assert telemetry.export_latest(held) == 3
    assert sorted(scores) == [("m", "1", "f", "psi", 0.2), ("m", "1", "prediction", "psi", 0.3), ("m", "2", "f", "psi", 0.7)]
    assert alerts == []
