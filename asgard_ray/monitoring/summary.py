"""Per-partition summaries: what history totals need, without holding or re-reading the records.

One summary per model and date partition counts the records by (version, metric type, alerted), with
their alert counts and first and last timestamps. It also names the objects it covers, so a rebuild
reads only the objects a summary does not cover, and the objects a compaction replaced, so a crash
between a compaction's writes and its deletes never counts a record twice. Summaries of closed
partitions live on S3 (``summaries/model=<m>/date=<d>.json``); the actor keeps all of them in memory
(a few cells per partition), which is what keeps its memory bounded while totals stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from asgard_ray.monitoring.schemas import MonitoringRecord

__all__ = ["Match", "PartitionSummary"]

_Cell = tuple[str, str, bool]  # (model_version, metric_type, alerted)


@dataclass
class Match:
    """Totals of the records that match a query's filters."""

    count: int = 0
    alerts: int = 0
    types: set[str] = field(default_factory=set)
    first: str | None = None
    last: str | None = None

    def add(self, count: int, alerts: int, metric_type: str, first: str, last: str) -> None:
        """Fold in ``count`` matching records."""
        if count <= 0:
            return
        self.count += count
        self.alerts += alerts
        self.types.add(metric_type)
        self.first = first if self.first is None else min(self.first, first)
        self.last = last if self.last is None else max(self.last, last)

    def merge(self, other: Match) -> None:
        """Fold in another match."""
        if not other.count:
            return
        self.count += other.count
        self.alerts += other.alerts
        self.types |= other.types
        self.first = other.first if self.first is None or other.first is None else min(self.first, other.first)
        self.last = other.last if self.last is None or other.last is None else max(self.last, other.last)


@dataclass
class PartitionSummary:
    """Counts of one model and date partition."""

    model: str
    date: str
    cells: dict[_Cell, list[Any]] = field(default_factory=dict)  # cell -> [count, alerts, first_ts, last_ts]
    objects: set[str] = field(default_factory=set)
    replaced: set[str] = field(default_factory=set)

    @property
    def total(self) -> int:
        """Records in the partition."""
        return sum(c[0] for c in self.cells.values())

    def versions(self) -> set[str]:
        """Model versions with records here."""
        return {v for v, _, _ in self.cells}

    def add(self, record: MonitoringRecord) -> None:
        """Count one record."""
        key = (record.model_version, record.metric_type, record.alert_triggered)
        cell = self.cells.get(key)
        if cell is None:
            self.cells[key] = [1, len(record.alerts), record.timestamp, record.timestamp]
        else:
            cell[0] += 1
            cell[1] += len(record.alerts)
            cell[2] = min(cell[2], record.timestamp)
            cell[3] = max(cell[3], record.timestamp)

    def matching(self, version: str | None, metric_type: str | None, alerts_only: bool) -> Match:
        """Totals of the records that pass the filters."""
        out = Match()
        for (v, t, alerted), (count, alerts, first, last) in self.cells.items():
            if (version is None or v == version) and (metric_type is None or t == metric_type) and (alerted or not alerts_only):
                out.add(count, alerts, t, first, last)
        return out

    def to_json(self) -> dict[str, Any]:
        """The stored form."""
        return {
            "model": self.model,
            "date": self.date,
            "objects": sorted(self.objects),
            "replaced": sorted(self.replaced),
            "cells": [[v, t, a, *c] for (v, t, a), c in sorted(self.cells.items())],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PartitionSummary:
        """Read the stored form (raises ``KeyError``/``ValueError``/``TypeError`` when it is malformed)."""
        cells: dict[_Cell, list[Any]] = {}
        for v, t, a, count, alerts, first, last in data["cells"]:
            cells[(str(v), str(t), bool(a))] = [int(count), int(alerts), str(first), str(last)]
        return cls(
            model=str(data["model"]),
            date=str(data["date"]),
            cells=cells,
            objects={str(o) for o in data["objects"]},
            replaced={str(o) for o in data.get("replaced", [])},
        )
