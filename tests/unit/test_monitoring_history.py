"""History over day summaries and the capped memory window, against a brute-force answer (pure logic)."""

from __future__ import annotations

import random

import pytest

from asgard_ray.monitoring.history import query_history
from asgard_ray.monitoring.schemas import HistoryRequest, MonitoringRecord
from asgard_ray.monitoring.summary import PartitionSummary
from asgard_ray.monitoring.window import MemoryWindow

RNG = random.Random(3)
RECORDS = sorted(
    (MonitoringRecord(monitoring_id=f"mon-{i:04d}", model_name="m", model_version=RNG.choice("123"),
                      metric_type=RNG.choice(["custom", "feature_drift"]), metrics={"x": float(i)},
                      alert_triggered=(alerted := RNG.random() < 0.3), alerts=["x"] * alerted * RNG.randint(1, 2),
                      timestamp=f"2026-01-{RNG.randint(1, 9):02d}T{RNG.randint(0, 23):02d}:{RNG.randint(0, 59):02d}:00.000000Z")
     for i in range(400)),
    key=lambda r: (r.timestamp, r.monitoring_id))


def brute(q: HistoryRequest) -> tuple[list[str], int, int, list[str]]:
    from asgard_ray.monitoring.schemas import format_ts

    lo = format_ts(q.start_date) if q.start_date else ""
    hi = format_ts(q.end_date) if q.end_date else "\uffff"
    hits = [r for r in reversed(RECORDS) if lo <= r.timestamp <= hi and (q.model_version in (None, r.model_version))
            and (q.metric_type in (None, r.metric_type)) and (r.alert_triggered or not q.alerts_only)]
    return ([r.monitoring_id for r in hits[q.offset:q.offset + q.limit]], len(hits), sum(len(r.alerts) for r in hits),
            sorted({r.metric_type for r in hits}))


QUERIES = [
    {}, {"limit": 10, "offset": 95}, {"model_version": "2", "limit": 7, "offset": 20}, {"alerts_only": True},
    {"metric_type": "custom", "start_date": "2026-01-03T12:00:00Z", "end_date": "2026-01-07T05:00:00Z"},
    {"start_date": "2026-01-04T00:00:00Z", "end_date": "2026-01-04T23:59:59.999999Z", "limit": 3},
    {"start_date": "2026-02-01T00:00:00Z"}, {"offset": 1000},
]


@pytest.mark.parametrize("q", QUERIES)
def test_summaries_plus_edge_days_match_brute_force(q: dict) -> None:
    parts: dict[str, PartitionSummary] = {}
    for r in RECORDS:
        parts.setdefault(r.timestamp[:10], PartitionSummary("m", r.timestamp[:10])).add(r)
    fetched: list[str] = []

    def fetch(date: str) -> list[MonitoringRecord]:
        fetched.append(date)
        return [r for r in RECORDS if r.timestamp[:10] == date]

    query = HistoryRequest(model_name="m", **q)
    got = query_history(query, parts, fetch)
    ids, total, alerts, types = brute(query)
    assert [r.monitoring_id for r in got.records] == ids
    assert (got.total_records, got.summary.total_alerts, got.summary.metric_types) == (total, alerts, types)
    assert got.has_more == (query.offset + len(ids) < total)
    # only the days that hold the page, plus the two edge days of the range, are read
    assert len(set(fetched)) <= len({r.timestamp[:10] for r in got.records}) + 2


def test_window_caps_count_and_bytes_and_moves_its_horizon() -> None:
    window = MemoryWindow(max_records=50, max_bytes=10_000)
    for r in RECORDS:
        window.add(r, 100)
    assert len(window) == 50 and window.bytes == 5000
    assert window.horizon == (RECORDS[-51].timestamp, RECORDS[-51].monitoring_id)
    assert {r.monitoring_id for r in window.records()} == {r.monitoring_id for r in RECORDS[-50:]}
    window.add(RECORDS[0], 100)  # older than the horizon: not held
    assert RECORDS[0].monitoring_id not in window
    small = MemoryWindow(max_records=1000, max_bytes=1000)
    for r in RECORDS[:30]:
        small.add(r, 100)
    assert len(small) == 10 and small.bytes == 1000
    assert not small.covers(RECORDS[0].timestamp[:10]) and small.covers("2026-02-01")
