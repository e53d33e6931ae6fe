"""Monitoring's share of the platform metrics: drift scores per feature and alerts per rule, once stored.

``MonitoringState`` calls ``export_record`` for each record it has made durable (never for a retry
that found its record already stored), so a drift job's metrics reach Prometheus as
``ray_asgard_drift_score{model, version, feature, metric}`` and every fired rule counts once in
``ray_asgard_alerts_total{model, rule}``. A restarted actor sets the drift scores again from the newest
drift records it rebuilt (``export_latest``; alerts are not counted twice). Outside Ray (unit tests)
``asgard_ray.metrics`` does nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from asgard_ray import metrics
from asgard_ray.monitoring.schemas import MetricType, MonitoringRecord

__all__ = ["DRIFT_TYPES", "export_latest", "export_record", "feature_metric"]

DRIFT_TYPES = frozenset({MetricType.FEATURE_DRIFT.value, MetricType.PREDICTION_DRIFT.value})
"""Record types whose metrics are drift scores."""


def feature_metric(metric_type: str, name: str) -> tuple[str, str]:
    """``(feature, metric)`` of a drift metric's name: ``total_orders.psi`` -> ``(total_orders, psi)``.

    A prediction-drift metric belongs to the model output, ``prediction``; a feature-drift metric
    without a feature prefix (a hand-posted ``drift_score``) to ``all``.
    """
    if metric_type == MetricType.PREDICTION_DRIFT.value:
        return "prediction", name
    feature, dot, metric = name.rpartition(".")
    return (feature, metric) if dot and feature and metric else ("all", name)


def export_record(record: MonitoringRecord, fired: list[tuple[str, str]]) -> None:
    """Record a stored record's drift scores and the alerts its rules fired (``(rule, message)`` pairs)."""
    if record.metric_type in DRIFT_TYPES:
        for name, value in record.metrics.items():
            feature, metric = feature_metric(record.metric_type, name)
            metrics.drift_score(record.model_name, record.model_version, feature, metric, float(value))
    for rule, count in Counter(rule for rule, _ in fired).items():
        metrics.alert(record.model_name, rule, count)


def export_latest(records: Iterable[MonitoringRecord]) -> int:
    """Set the drift scores of the newest drift record per model version and type (after a rebuild); return how many records."""
    newest: dict[tuple[str, str, str], MonitoringRecord] = {}
    for record in records:
        if record.metric_type in DRIFT_TYPES:
            key = (record.model_name, record.model_version, record.metric_type)
            held = newest.get(key)
            if held is None or (record.timestamp, record.monitoring_id) > (held.timestamp, held.monitoring_id):
                newest[key] = record
    for record in sorted(newest.values(), key=lambda r: r.timestamp):
        export_record(record, [])
    return len(newest)
