"""The platform's metrics, on Ray's own metrics export: predictions, latencies, drift, alerts, jobs, queues.

Why a module of its own: every capability reports through the same few typed functions, so the series
names and labels live in one place (``SERIES``), and the Grafana dashboard in ``cluster/grafana`` and the
tests read them from there. The series are ``ray.util.metrics`` objects, so they travel the way Ray's own
metrics do: each node's metrics agent serves them in Prometheus format on the node's metrics export port
(``ray start --metrics-export-port``; 8080 on a KubeRay pod), next to Ray's, with Ray's own labels added
(``SessionName``, ``NodeAddress``, ``WorkerId``, ...). Prometheus sees each name with Ray's ``ray_`` prefix,
and a counter with ``_total`` after it: ``asgard_prediction_requests`` is scraped as
``ray_asgard_prediction_requests_total``.

Cheap and inert where there is no Ray: importing this module imports nothing but the standard library;
``ray.util.metrics`` is imported, and each metric object created, on the first record in a process that
runs inside Ray (a worker, an actor, a Serve replica or a driver after ``ray.init``). Anywhere else (unit
tests, plain scripts) every function does nothing. Recording never raises into the caller: a failure is
logged at debug level and the work goes on.

Gauges hold their last value. Ray's export (2.60) forgets a gauge series that its process has not set
again within two report intervals (about 20 s), so a drift score set once by a drift job would vanish
from Prometheus soon after. This module therefore remembers the last value of each gauge series it set
(at most ``MAX_GAUGE_SERIES`` per process, the oldest forgotten first) and sets them all again every
``GAUGE_REFRESH_S`` from one daemon thread, started with the process's first gauge.

Who calls what: ``serving`` records ``prediction`` per request; ``monitoring`` records ``drift_score``
per stored drift metric, ``alert`` per rule that fired, and ``wal_backlog`` as its upload backlog moves.
``job_state`` and ``queue_depth`` are for the jobs core: ``job_state(kind, state)`` each time a job of
``kind`` enters ``state``, ``queue_depth(kind, n)`` each time the admission queue of ``kind`` changes.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any, Final

__all__ = [
    "GAUGE_REFRESH_S",
    "LATENCY_BOUNDARIES_S",
    "MAX_GAUGE_SERIES",
    "PROMETHEUS_PREFIX",
    "SERIES",
    "alert",
    "drift_score",
    "job_state",
    "prediction",
    "prometheus_name",
    "queue_depth",
    "wal_backlog",
]

log = logging.getLogger(__name__)

PROMETHEUS_PREFIX: Final = "ray_"
"""What Ray's export puts before every metric name."""

LATENCY_BOUNDARIES_S: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Bucket bounds (seconds) of the prediction latency histogram: 1 ms to 10 s."""

_MAX_LABEL = 120
"""Longest label value kept (a request-named metric or model name cannot blow up a series' size)."""

GAUGE_REFRESH_S: Final = 5.0
"""How often a process sets its gauges again (Ray's export drops a gauge not set within ~20 s)."""

MAX_GAUGE_SERIES: Final = 10_000
"""Most gauge series one process keeps setting again; past it, the series set longest ago is forgotten."""


# name -> (kind, description, label keys). Kinds: counter, gauge, histogram.
SERIES: Final[dict[str, tuple[str, str, tuple[str, ...]]]] = {
    "asgard_prediction_requests": (
        "counter",
        "Real-time prediction requests, by model, version that answered, route and status (ok or error).",
        ("model", "version", "route", "status"),
    ),
    "asgard_predicted_rows": (
        "counter",
        "Rows predicted in real time, by model, version and route.",
        ("model", "version", "route"),
    ),
    "asgard_prediction_latency_seconds": (
        "histogram",
        "Real-time prediction latency inside the prediction replica, in seconds, by model, version and route.",
        ("model", "version", "route"),
    ),
    "asgard_drift_score": (
        "gauge",
        "Last stored drift metric of a model version per feature ('prediction' for the output) and metric (psi, ks_pvalue, ...).",
        ("model", "version", "feature", "metric"),
    ),
    "asgard_alerts": (
        "counter",
        "Monitoring alerts fired, by model and alert rule (drift, p_value, missing_data, performance, ...).",
        ("model", "rule"),
    ),
    "asgard_job_transitions": (
        "counter",
        "Jobs that entered a state (queued, running, completed, failed, cancelled), by job kind.",
        ("kind", "state"),
    ),
    "asgard_job_queue_depth": (
        "gauge",
        "Jobs waiting in the admission queue of a job kind.",
        ("kind",),
    ),
    "asgard_monitoring_wal_backlog": (
        "gauge",
        "Monitoring records acknowledged from the write-ahead log and not yet on S3.",
        (),
    ),
}
"""Every series this module exports: name -> (kind, description, label keys)."""


def prometheus_name(name: str) -> str:
    """The name Prometheus scrapes for one of ``SERIES`` (Ray's prefix; ``_total`` after a counter)."""
    kind = SERIES[name][0]
    return f"{PROMETHEUS_PREFIX}{name}{'_total' if kind == 'counter' else ''}"


_lock = threading.Lock()
_metrics: dict[str, Any] = {}
_gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
"""Last value of each gauge series this process set: (name, labels) -> value, oldest first."""
_refresher: threading.Thread | None = None


def _on_ray() -> bool:
    """Whether this process runs inside Ray (never imports Ray: a process that has not imported it is not)."""
    ray = sys.modules.get("ray")
    if ray is None:
        return False
    try:
        return bool(ray.is_initialized())
    except Exception:
        return False


def _metric(name: str) -> Any:
    """The process's metric object for ``name``, created on first use."""
    found = _metrics.get(name)
    if found is not None:
        return found
    with _lock:
        if name not in _metrics:
            from ray.util import metrics as ray_metrics

            kind, description, keys = SERIES[name]
            if kind == "counter":
                _metrics[name] = ray_metrics.Counter(name, description=description, tag_keys=keys)
            elif kind == "gauge":
                _metrics[name] = ray_metrics.Gauge(name, description=description, tag_keys=keys)
            else:
                _metrics[name] = ray_metrics.Histogram(name, description=description, boundaries=list(LATENCY_BOUNDARIES_S), tag_keys=keys)
        return _metrics[name]


def _label(value: object) -> str:
    text = str(value) if value is not None else ""
    return text[:_MAX_LABEL]


def _record(name: str, how: str, value: float, tags: dict[str, object]) -> None:
    """Record one value (``how``: inc, set or observe); a no-op outside Ray; never raises."""
    if not _on_ray():
        return
    try:
        metric = _metric(name)
        labels = {k: _label(v) for k, v in tags.items()}
        if how == "set":
            _remember(name, labels, value)
        getattr(metric, how)(value, tags=labels or None)
    except Exception:
        log.debug("recording metric %s failed", name, exc_info=True)


def _remember(name: str, labels: dict[str, str], value: float) -> None:
    """Keep a gauge series' last value for the refresher (started here, once per process)."""
    global _refresher
    key = (name, tuple(sorted(labels.items())))
    with _lock:
        _gauges.pop(key, None)
        _gauges[key] = value
        while len(_gauges) > MAX_GAUGE_SERIES:
            del _gauges[next(iter(_gauges))]
        if _refresher is None:
            _refresher = threading.Thread(target=_refresh_gauges, name="asgard-metrics-gauges", daemon=True)
            _refresher.start()


def _refresh_gauges() -> None:
    """Set every remembered gauge series again, every ``GAUGE_REFRESH_S``, for the life of the process."""
    while True:
        time.sleep(GAUGE_REFRESH_S)
        with _lock:
            series = list(_gauges.items())
        for (name, labels), value in series:
            try:
                _metric(name).set(value, tags=dict(labels) or None)
            except Exception:
                log.debug("setting gauge %s again failed", name, exc_info=True)


def prediction(model: str, version: str, route: str, seconds: float, *, rows: int = 1, ok: bool = True) -> None:
    """Count one real-time prediction request, its rows, and its latency.

    Args:
        model: Registered model name.
        version: The version that answered (``"none"`` when the request failed before one was chosen).
        route: Where the request came in: ``/predict/{model}`` or ``/mlops/serve``.
        seconds: Time spent in the prediction replica.
        rows: Rows predicted (0 for a failed request).
        ok: Whether the request was answered with predictions.
    """
    _record("asgard_prediction_requests", "inc", 1, {"model": model, "version": version, "route": route, "status": "ok" if ok else "error"})
    if rows > 0:
        _record("asgard_predicted_rows", "inc", rows, {"model": model, "version": version, "route": route})
    if ok:
        _record("asgard_prediction_latency_seconds", "observe", max(seconds, 0.0), {"model": model, "version": version, "route": route})


def drift_score(model: str, version: str, feature: str, metric: str, value: float) -> None:
    """Set the last drift metric of a model version's feature (``prediction`` for the model output)."""
    _record("asgard_drift_score", "set", float(value), {"model": model, "version": version, "feature": feature, "metric": metric})


def alert(model: str, rule: str, count: int = 1) -> None:
    """Count alerts fired for a model by one rule."""
    if count > 0:
        _record("asgard_alerts", "inc", count, {"model": model, "rule": rule})


def job_state(kind: str, state: str) -> None:
    """Count a job of ``kind`` entering ``state`` (for the jobs core: call it on every transition)."""
    _record("asgard_job_transitions", "inc", 1, {"kind": kind, "state": state})


def queue_depth(kind: str, n: int) -> None:
    """Set how many jobs of ``kind`` wait in the admission queue (for the jobs core: call it when the queue changes)."""
    _record("asgard_job_queue_depth", "set", float(n), {"kind": kind})


def wal_backlog(n: int) -> None:
    """Set how many monitoring records are acknowledged from the write-ahead log and not yet on S3."""
    _record("asgard_monitoring_wal_backlog", "set", float(n), {})
