"""The monitoring actor's memory: the newest records, capped by count and by serialized size.

Everything newer than the ``horizon`` key is here; older records are on S3 only and history pages
them from there. Records are evicted oldest first (a heap over ``(timestamp, id)`` keys), and the
horizon moves up to each evicted key, so "is this day in memory" is one comparison.
"""

from __future__ import annotations

import bisect
import heapq
from collections import defaultdict

from asgard_ray.monitoring.schemas import MonitoringRecord

__all__ = ["Key", "MemoryWindow", "day_bounds"]

Key = tuple[str, str]
"""(UTC timestamp text, record id): text order is time order (fixed-width ISO-8601)."""


def day_bounds(date: str) -> tuple[Key, Key]:
    """The keys just before and just after every record of a date (``YYYY-MM-DD``)."""
    return (date, ""), (date + "\uffff", "")


class MemoryWindow:
    """Newest records per model (sorted), with a global cap on count and bytes. Not thread-safe: callers lock."""

    def __init__(self, max_records: int, max_bytes: int) -> None:
        self.max_records = max(max_records, 1)
        self.max_bytes = max(max_bytes, 1)
        self.bytes = 0
        self.horizon: Key | None = None
        self.evicted = 0
        self._keys: dict[str, list[Key]] = defaultdict(list)
        self._recs: dict[str, list[MonitoringRecord]] = defaultdict(list)
        self._by_id: dict[str, tuple[MonitoringRecord, int]] = {}
        self._heap: list[tuple[Key, str]] = []

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, monitoring_id: str) -> bool:
        return monitoring_id in self._by_id

    def add(self, record: MonitoringRecord, size: int) -> None:
        """Hold a record (ignored if older than the horizon, or already held), then evict past the caps."""
        key = (record.timestamp, record.monitoring_id)
        if record.monitoring_id in self._by_id or (self.horizon is not None and key <= self.horizon):
            return
        keys, recs = self._keys[record.model_name], self._recs[record.model_name]
        i = bisect.bisect_right(keys, key)
        keys.insert(i, key)
        recs.insert(i, record)
        self._by_id[record.monitoring_id] = (record, size)
        heapq.heappush(self._heap, (key, record.model_name))
        self.bytes += size
        while len(self._by_id) > self.max_records or self.bytes > self.max_bytes:
            self._evict(move_horizon=True)

    def _evict(self, move_horizon: bool) -> None:
        key, model = heapq.heappop(self._heap)
        keys, recs = self._keys[model], self._recs[model]
        # the globally oldest record is its model's oldest: index 0
        assert keys[0] == key, "monitoring memory index out of order"
        del keys[0]
        record = recs.pop(0)
        _, size = self._by_id.pop(record.monitoring_id)
        self.bytes -= size
        self.evicted += 1
        if not keys:
            del self._keys[model], self._recs[model]
        if move_horizon and (self.horizon is None or key > self.horizon):
            self.horizon = key

    def forget_through(self, key: Key, move_horizon: bool = True) -> None:
        """Drop every record at or before ``key`` (and, by default, declare that range not held)."""
        while self._heap and self._heap[0][0] <= key:
            self._evict(move_horizon=False)
        if move_horizon and (self.horizon is None or key > self.horizon):
            self.horizon = key

    def covers(self, date: str) -> bool:
        """Whether every record of ``date`` that is stored is held here."""
        return self.horizon is None or self.horizon < day_bounds(date)[0]

    def day(self, model: str, date: str) -> list[MonitoringRecord]:
        """A model's held records of one date, oldest first."""
        lo, hi = day_bounds(date)
        keys = self._keys.get(model, [])
        return self._recs[model][bisect.bisect_left(keys, lo) : bisect.bisect_left(keys, hi)] if keys else []

    def get(self, monitoring_id: str) -> MonitoringRecord | None:
        """A held record by id."""
        held = self._by_id.get(monitoring_id)
        return held[0] if held else None

    def records(self) -> list[MonitoringRecord]:
        """Every held record (any order)."""
        return [r for r, _ in self._by_id.values()]

    def newest(self, model: str, per_version: int) -> dict[str, list[MonitoringRecord]]:
        """Up to ``per_version`` newest held records of each version of a model, oldest first."""
        out: dict[str, list[MonitoringRecord]] = defaultdict(list)
        for r in reversed(self._recs.get(model, [])):
            bucket = out[r.model_version]
            if len(bucket) < per_version:
                bucket.append(r)
        return {v: rs[::-1] for v, rs in out.items()}
