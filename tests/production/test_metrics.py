"""The platform's metrics reach a real Prometheus through Ray's own metrics export, with the right labels.

Prometheus (Debian's ``/usr/bin/prometheus``) scrapes the Ray head's metrics export port every second.
After real-time predictions on both routes and the seed's drift job, the query API must return the
platform's series (``asgard_ray.metrics.SERIES``) for this model and version: requests, rows, latency
histogram, drift scores equal to the stored records, alerts per rule. The jobs core's two series
(``job_state``, ``queue_depth``) and the write-ahead-log backlog are recorded by a Ray job submitted to
the cluster (the jobs core wires them itself; this checks their names and labels on the export).
"""

from __future__ import annotations

import subprocess
from typing import Any

import httpx
import pytest

from asgard_ray import metrics
from tests.production.conftest import BIN, MODEL, ProdStack, wait_until
from tests.production.workflow import SeedRun, call

pytestmark = [pytest.mark.production, pytest.mark.timeout(900)]

WAIT_S = 180
"""How long a series may take to show up (Ray reports every 10 s, Prometheus scrapes every second; a loaded machine lags)."""

INSTANCES = [
    {"total_orders": 3, "avg_order_value": 41.2, "days_since_last_order": 12},
    {"total_orders": 40, "avg_order_value": 99.0, "days_since_last_order": 1},
]
JOB_SCRIPT = """
import time, ray
ray.init()
from asgard_ray import metrics
metrics.job_state("prodtest", "queued"); metrics.job_state("prodtest", "running"); metrics.job_state("prodtest", "completed")
metrics.queue_depth("prodtest", 3)
metrics.wal_backlog(7)
time.sleep(15)  # outlive a few of the core worker's metric reports
"""


def _query(prometheus: str, promql: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=10)
    r.raise_for_status()
    body = r.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def _series(prometheus: str, name: str, **labels: str) -> list[dict[str, Any]]:
    """Every series of ``name`` with these labels seen in the last 15 minutes, with its latest value."""
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return _query(prometheus, f"last_over_time({name}{{{selector}}}[15m])")


def _total(found: list[dict[str, Any]]) -> float:
    return sum(float(s["value"][1]) for s in found)


def _expect(prometheus: str, name: str, **labels: str) -> list[dict[str, Any]]:
    """The series of ``name`` with these labels, waited for; on a timeout, the error lists what the export holds."""
    try:
        return wait_until(lambda: _series(prometheus, name, **labels), WAIT_S, f"{name}{labels}")  # type: ignore[return-value]
    except TimeoutError as exc:
        seen = [s["metric"] for s in _query(prometheus, f"last_over_time({name}[15m])")]
        raise AssertionError(f"{exc}; series of {name} seen: {seen[:20]}") from exc


def test_platform_series_reach_prometheus_with_their_labels(prod_stack: ProdStack, seed: SeedRun, prometheus: str) -> None:
    job = subprocess.run(
        [str(BIN / "ray"), "job", "submit", "--address", prod_stack.dashboard_url, "--no-wait", "--", "python", "-c", JOB_SCRIPT],
        env=prod_stack.env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert job.returncode == 0, job.stdout[-2000:] + job.stderr[-2000:]
    with prod_stack.client(timeout=300) as api:
        for path in (f"/predict/{MODEL}", "/mlops/serve"):
            answer = call(api, "POST", path, {"model_name": MODEL, "instances": INSTANCES})
            assert answer["model_version"] == seed.version and len(answer["predictions"]) == 2, answer
        stored = call(api, "GET", f"/mlops/monitoring/history?model_name={MODEL}&limit=100")
    drift = next(r for r in stored["records"] if r["metric_type"] == "feature_drift")

    assert wait_until(lambda: _query(prometheus, 'up{job="ray"} == 1'), WAIT_S, "Prometheus to scrape Ray's metrics export")
    v = seed.version
    for route in ("/predict/{model}", "/mlops/serve"):
        found = _expect(prometheus, metrics.prometheus_name("asgard_prediction_requests"), model=MODEL, version=v, route=route, status="ok")
        assert _total(found) >= 1, found
        assert all("SessionName" in s["metric"] for s in found)  # Ray's export, Ray's labels
        rows = _expect(prometheus, metrics.prometheus_name("asgard_predicted_rows"), model=MODEL, version=v, route=route)
        assert _total(rows) >= 2, rows
        buckets = _expect(prometheus, "ray_asgard_prediction_latency_seconds_bucket", model=MODEL, version=v, route=route, le="+Inf")
        assert _total(buckets) >= 1, buckets

    # drift scores per feature, equal to what the drift job stored; the manual record's drift_score as well
    psi = drift["metrics"]["total_orders.psi"]
    found = _expect(prometheus, "ray_asgard_drift_score", model=MODEL, version=v, feature="total_orders", metric="psi")
    assert _total(found) == pytest.approx(psi), (found, psi)
    manual = _expect(prometheus, "ray_asgard_drift_score", model=MODEL, version=v, feature="prediction", metric="drift_score")
    assert _total(manual) == pytest.approx(0.15), manual
    alerts = _expect(prometheus, metrics.prometheus_name("asgard_alerts"), model=MODEL, rule="drift")
    assert _total(alerts) >= 1, alerts

    # the jobs core's series and the write-ahead-log backlog, recorded by a job on the cluster
    for state in ("queued", "running", "completed"):
        found = _expect(prometheus, metrics.prometheus_name("asgard_job_transitions"), kind="prodtest", state=state)
        assert _total(found) == 1, found
    assert _total(_expect(prometheus, "ray_asgard_job_queue_depth", kind="prodtest")) == 3
    assert _total(_expect(prometheus, "ray_asgard_monitoring_wal_backlog")) == 7

    # every series the module declares was exported (the names the Grafana dashboard queries)
    for name, (kind, _, _) in metrics.SERIES.items():
        exported = f"ray_{name}_count" if kind == "histogram" else metrics.prometheus_name(name)
        assert _query(prometheus, f"last_over_time({exported}[15m])"), exported
