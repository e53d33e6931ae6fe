"""MonitoringState against the real S3 server (no Ray, no MLflow): durability, history, rules."""

from __future__ import annotations

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
    files = list_files(base_settings, base_settings.state_uri("monitoring", prefix, "records"))
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
    objects = list_files(base_settings, base_settings.state_uri("monitoring", prefix, "records"))
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


def _old_records(n: int, days_ago: list[int], model: str = "churn_predictor") -> list:
    from asgard_ray.monitoring.schemas import MonitoringRecord

    out = []
    for i in range(n):
        day = (datetime.now(UTC) - timedelta(days=days_ago[i % len(days_ago)])).strftime("%Y-%m-%d")
        out.append(MonitoringRecord(monitoring_id=f"mon-old-{i}", model_name=model, model_version=str(1 + i % 2),
                                    metric_type="custom", metrics={"x": float(i)}, alert_triggered=i % 3 == 0,
                                    alerts=["x above threshold"] if i % 3 == 0 else [],
                                    timestamp=f"{day}T00:{i // 60 % 60:02d}:{i % 60:02d}.000000Z"))
    return out


def test_closed_partitions_are_summarised_and_compacted_without_loss(base_settings: Settings, prefix: str) -> None:
    from asgard_ray.monitoring.state import COMPACT_OBJECTS
    from asgard_ray.monitoring.store import RecordStore

    store = RecordStore(base_settings, prefix)
    n = 2 * (COMPACT_OBJECTS + 2)
    for r in _old_records(n, [3, 4]):
        store.write_group("churn_predictor", r.timestamp[:10], [r])  # one object per record, as single POSTs do
    state = MonitoringState(base_settings, prefix=prefix, mirror=False)
    state.log(req())  # today's partition stays open
    assert state.maintenance_done.wait(60)
    files = list_files(base_settings, store.records_uri)
    assert len(files) == 3  # two closed dates merged, today's untouched
    summaries = list_files(base_settings, base_settings.state_uri("monitoring", prefix, "summaries"))
    assert len(summaries) == 2
    again = MonitoringState(base_settings, prefix=prefix, mirror=False, compact=False)
    assert again.count() == n + 1
    full = again.history(HistoryRequest(model_name="churn_predictor", limit=10_000))
    assert len({r.monitoring_id for r in full.records}) == n + 1 == full.total_records


def test_memory_is_capped_and_older_history_is_paged_from_s3(base_settings: Settings, prefix: str) -> None:
    from asgard_ray.monitoring.store import RecordStore

    store = RecordStore(base_settings, prefix)
    old = _old_records(40, [2, 5, 9])
    for day in {r.timestamp[:10] for r in old}:
        store.write_group("churn_predictor", day, [r for r in old if r.timestamp[:10] == day])
    everything = MonitoringState(base_settings, prefix=prefix, mirror=False, compact=False)
    capped = MonitoringState(base_settings, prefix=prefix, mirror=False, compact=False, memory_records=5)
    assert capped.stats()["records_in_memory"] == 5 and everything.stats()["records_in_memory"] == 40
    for _ in range(3):
        capped.log(req())  # new records push older ones out; the cap holds
    assert capped.stats()["records_in_memory"] == 5 and capped.count() == 43
    reference = MonitoringState(base_settings, prefix=prefix, mirror=False, compact=False)
    queries = [
        {}, {"limit": 7, "offset": 3}, {"limit": 5, "offset": 30}, {"model_version": "2"}, {"alerts_only": True},
        {"metric_type": "custom", "limit": 4, "offset": 10},
        {"start_date": old[2].timestamp, "end_date": old[1].timestamp[:10] + "T00:00:20Z"},  # partial edge days
        {"start_date": old[2].timestamp[:10] + "T00:00:00Z", "limit": 3, "offset": 2, "model_version": "1"},
    ]
    for q in queries:
        query = HistoryRequest(model_name="churn_predictor", **q)
        got, want = capped.history(query), reference.history(query)
        assert got.model_dump() == want.model_dump(), q
    assert capped.history(HistoryRequest(model_name="churn_predictor", limit=10_000)).total_records == 43
    with pytest.raises(NotFound, match="among the 5 newest"):
        capped.get("mon-old-0")


def test_days_past_retention_are_deleted(base_settings: Settings, prefix: str) -> None:
    from asgard_ray.monitoring.store import RecordStore

    store = RecordStore(base_settings, prefix)
    old = _old_records(6, [1, 30, 400])
    for r in old:
        store.write_group("churn_predictor", r.timestamp[:10], [r])
    kept = base_settings.model_copy(update={"asgard_monitoring_retention_days": 60})
    state = MonitoringState(kept, prefix=prefix, mirror=False)
    assert state.maintenance_done.wait(60)
    assert state.count() == 4
    dates = {f.split("date=")[1][:10] for f in list_files(base_settings, store.records_uri)}
    assert dates == {r.timestamp[:10] for r in old[:2]}  # the 400-day-old partition is gone


POISON = [
    ('{"monitoring_id": "mon-deep", "reference_data": ' + "[" * 210 + "]" * 210 + "}").encode(),
    b"this is not json",
    b'{"monitoring_id": 5, "model_name": ["x"], "metrics": "high"}',
    b"\xff\xfe not utf-8",
]


@pytest.mark.parametrize("poison", POISON, ids=["deep", "not-json", "wrong-types", "not-utf8"])
def test_one_unreadable_record_is_quarantined_and_never_stops_a_rebuild(
        base_settings: Settings, prefix: str, poison: bytes) -> None:
    from asgard_ray.storage import write_bytes

    state = MonitoringState(base_settings, prefix=prefix, mirror=False, compact=False)
    good = state.log(req())
    today = good.timestamp[:10]
    line = state.get(good.monitoring_id).model_dump_json().replace(good.monitoring_id, "mon-salvaged").encode()
    write_bytes(base_settings, base_settings.state_uri("monitoring", prefix, "records", "model=churn_predictor", f"date={today}", "0000000000000-poison.jsonl"),
                line + b"\n" + poison + b"\n")
    write_bytes(base_settings, base_settings.state_uri("monitoring", prefix, "rules", "model=poisoned.json"), poison)
    restarted = MonitoringState(base_settings, prefix=prefix, mirror=False, compact=False)
    stats = restarted.stats()
    assert stats["quarantined_records"] >= 2 and stats["quarantined_objects"] == 2
    ids = {r.monitoring_id for r in restarted.history(HistoryRequest(model_name="churn_predictor")).records}
    assert ids == {good.monitoring_id, "mon-salvaged"}  # the readable line of the poisoned object is kept
    assert restarted.log(req()).monitoring_id
    quarantined = list_files(base_settings, base_settings.state_uri("monitoring", prefix, "quarantine"))
    assert sum(f.endswith(".reason.json") for f in quarantined) == 2
    # the next start reads no poison: it is out of the record prefix, and still counted
    again = MonitoringState(base_settings, prefix=prefix, mirror=False, compact=False)
    assert again.stats()["quarantined_objects"] == 2 and again.count() == 3
