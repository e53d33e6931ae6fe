"""Monitoring: a named Ray actor with a durable S3 log, alert rules, drift computed on Ray Data, pictures.

Public surface: ``MonitoringClient`` (what routes and jobs call), ``MonitoringState`` (the logic, testable
without Ray), the request/response schemas, the rules, ``compute_drift`` / ``submit_compute`` and the
reference profile helpers of ``profile``.
"""

from asgard_ray.monitoring.actor import ACTOR_NAME, MonitoringActor, MonitoringClient
from asgard_ray.monitoring.compute import compute_drift, load_reference_profile, submit_compute
from asgard_ray.monitoring.dashboard import render_dashboard
from asgard_ray.monitoring.profile import PROFILE_VERSION, QUANTILES, build_reference_profile, numeric_profile
from asgard_ray.monitoring.rules import DEFAULT_RULES, AlertRule, RuleSet, effective_rules, evaluate
from asgard_ray.monitoring.schemas import (
    ALLOWED_METRIC_TYPES,
    ComputeRequest,
    HistoryRequest,
    HistoryResponse,
    MetricType,
    MonitoringRecord,
    MonitoringRequest,
    MonitoringResponse,
)
from asgard_ray.monitoring.state import MonitoringState

__all__ = [
    "ACTOR_NAME",
    "ALLOWED_METRIC_TYPES",
    "DEFAULT_RULES",
    "PROFILE_VERSION",
    "QUANTILES",
    "AlertRule",
    "ComputeRequest",
    "HistoryRequest",
    "HistoryResponse",
    "MetricType",
    "MonitoringActor",
    "MonitoringClient",
    "MonitoringRecord",
    "MonitoringRequest",
    "MonitoringResponse",
    "MonitoringState",
    "RuleSet",
    "build_reference_profile",
    "compute_drift",
    "effective_rules",
    "evaluate",
    "load_reference_profile",
    "numeric_profile",
    "render_dashboard",
    "submit_compute",
]
