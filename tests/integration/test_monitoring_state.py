"""MonitoringState against the real S3 server (no Ray, no MLflow): durability, history, rules."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from asgard_ray.config import Settings
from asgard_ray.errors import InvalidRequest, NotFound
from asgard_ray.monitoring.rules import AlertRule, RuleSet
from asgard_ray.monitoring.schemas import HistoryRequest, MonitoringRequest
from asgard_ray.monitoring.state import MonitoringState
from asgard_ray.storage import ensure_buckets, list_files

pytestmark = pytest.mark.integration

SEED_BODY = {
    "model_name": "churn_predictor", "model_version": "1", "metric_type": "prediction_drift",
    "metrics": {"drift_score": 0.15, "psi": 0.08, "js_divergence": 0.12},
    "reference_data": {"mean": 0.35, "std": 0.12}, "current_data": {"mean": 0.42, "std": 0.15},
    "tags": {"deployment": "production"},
}


@pytest.fixture
def prefix(base_settings: Settings) -> str:
    ensure_buckets(base_settings, [base_settings.s3_bucket])
    return f"monitoring-test-{uuid.uuid4().hex[:8]}"


def req(**kw: object) -> MonitoringRequest:
    return MonitoringRequest.model_validate({**SEED_BODY, **kw})


def test_seed_post_then_restart_rebuilds_everything(base_settings: Settings, prefix: str) -> None:
    state = MonitoringState(base_settings, prefix=prefix, mirror=False)
    res = state.log(req())
    assert res.alert_triggered and "drift_score drift detected: 0.150" in res.alerts
    assert res.timestamp.endswith("Z") and res.monitoring_id.startswith("mon-")
    files = list_files(base_settings, base_settings.s3_uri(prefix, "records"))
    assert len(files) == 1 and "model=churn_predictor/date=" in files[0]  # durable before the call returned
    again = MonitoringState(base_settings, prefix=prefix, mirror=False)  # a restart
    assert again.get(res.monitoring_id).model_dump() == state.get(res.monitoring_id).model_dump()


def test_retry_with_same_id_is_not_a_duplicate(base_settings: Settings, prefix: str) -> None:
    state = MonitoringState(base_settings, prefix=prefix, mirror=False)
    first = state.log(req(), "mon-fixed-1")
    second = state.log(req(metrics={"psi": 0.9}), "mon-fixed-1")
    assert second == first and state.count() == 1


def test_concurrent_writes_group_commit_and_all_survive(base_settings: Settings, prefix: str) -> None:
    state = MonitoringState(base_settings, prefix=prefix, mirror=False)
    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(lambda i: state.log(req(metrics={"psi": i / 100}), f"mon-c-{i}").monitoring_id, range(64)))
    objects = list_files(base_settings, base_settings.s3_uri(prefix, "records"))
    assert len(objects) < 64  # several records shared a PUT
    rebuilt = MonitoringState(base_settings, prefix=prefix, mirror=False)
    assert {r.monitoring_id for r in rebuilt.history(HistoryRequest(model_name="churn_predictor", limit=1000)).records} == set(ids)


def test_history_exact_name_filters_time_range_and_paging(base_settings: Settings, prefix: str) -> None:
    state = MonitoringState(base_settings, prefix=prefix, mirror=False)
    for i in range(5):
        state.log(req(model_version=str(1 + i % 2)))
    state.log(req(metric_type="data_quality", metrics={"missing_rate": 0.01}))
    state.log(req(model_name="churn_predictor_v2"))
    # exact match: "churn" is not a prefix match of churn_predictor, it is unknown (with a hint)
    with pytest.raises(NotFound, match="did you mean"):
        state.history(HistoryRequest(model_name="churn_predicto"))
    full = state.history(HistoryRequest(model_name="churn_predictor"))
    assert full.total_records == 6 and all(r.model_name == "churn_predictor" for r in full.records)
    assert full.summary.metric_types == ["data_quality", "prediction_drift"]
    assert full.summary.total_alerts == 10  # drift_score and js_divergence on each of the 5 drift records
    stamps = [r.timestamp for r in full.records]
    assert stamps == sorted(stamps, reverse=True)  # newest first
    v2 = state.history(HistoryRequest(model_name="churn_predictor", model_version="2", metric_type="prediction_drift"))
    assert v2.total_records == 2
    page = state.history(HistoryRequest(model_name="churn_predictor", limit=4, offset=4))
    assert [r.monitoring_id for r in page.records] == [r.monitoring_id for r in full.records[4:]]
    assert page.total_records == 6 and not page.has_more
    # the seed's Z dates, and offsets, as a window around now
    now = datetime.now(UTC)
    z = (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    plus2 = (now + timedelta(hours=1)).astimezone().isoformat()
    window = state.history(HistoryRequest(model_name="churn_predictor", start_date=z, end_date=plus2))
    assert window.total_records == 6 and window.summary.date_range["start"].startswith(z[:19])
    past = state.history(HistoryRequest(model_name="churn_predictor", start_date="2025-10-01T00:00:00Z",
                                        end_date="2025-10-17T23:59:59+02:00"))
    assert past.total_records == 0 and past.records == []  # known model, nothing in range: empty, not 404


def test_rules_are_durable_and_apply_per_model(base_settings: Settings, prefix: str) -> None:
    state = MonitoringState(base_settings, prefix=prefix, mirror=False)
    state.set_rules(None, RuleSet(rules=[AlertRule(name="drift", threshold=0.5)]))
    state.set_rules("strict_model", RuleSet(rules=[AlertRule(name="drift", threshold=0.01)]))
    with pytest.raises(InvalidRequest, match="needs patterns"):
        state.set_rules(None, RuleSet(rules=[AlertRule(name="mystery", threshold=1)]))
    restarted = MonitoringState(base_settings, prefix=prefix, mirror=False)
    assert not restarted.log(req(metrics={"psi": 0.3})).alert_triggered
    assert restarted.log(req(model_name="strict_model", metrics={"psi": 0.05})).alert_triggered
    assert restarted.get_rules("strict_model")["effective"][0]["threshold"] == 0.01


def test_closed_partitions_are_compacted_without_loss(base_settings: Settings, prefix: str) -> None:
    from asgard_ray.monitoring.schemas import MonitoringRecord
    from asgard_ray.monitoring.store import RecordStore

    store = RecordStore(base_settings, prefix)
    old = [MonitoringRecord(monitoring_id=f"mon-old-{i}", model_name="churn_predictor", model_version="1",
                            metric_type="custom", metrics={"x": float(i)}, alert_triggered=False, alerts=[],
                            timestamp=f"2025-10-0{1 + i % 2}T00:00:0{i}.000000Z") for i in range(6)]
    for r in old:
        store.write_group("churn_predictor", r.timestamp[:10], [r])  # one object per record, as single POSTs do
    state = MonitoringState(base_settings, prefix=prefix, mirror=False)
    state.log(req())  # today's partition stays open
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(list_files(base_settings, store.records_uri)) > 3:
        time.sleep(0.2)
    assert len(list_files(base_settings, store.records_uri)) == 3  # two closed dates merged, today's untouched
    again = MonitoringState(base_settings, prefix=prefix, mirror=False, compact=False)
    assert again.count() == 7
