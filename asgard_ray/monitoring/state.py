"""The monitoring state as a plain class: durable log, in-memory index, rules, history queries.

``MonitoringActor`` (``asgard_ray.monitoring.actor``) wraps one instance in a named Ray actor; tests
use it directly. Writes use group commit: the first caller to find no commit in flight becomes the
committer and writes everything queued meanwhile (one PUT per model and date), then every waiter is
acknowledged. No record is acknowledged, indexed or mirrored before its PUT returned.
"""

from __future__ import annotations

import bisect
import difflib
import logging
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from asgard_ray.config import Settings
from asgard_ray.errors import InvalidRequest, NotFound, ServiceUnavailable
from asgard_ray.monitoring.mirror import MlflowMirror
from asgard_ray.monitoring.rules import DEFAULT_RULES, AlertRule, RuleSet, effective_rules, evaluate
from asgard_ray.monitoring.schemas import (
    HistoryRequest,
    HistoryResponse,
    HistorySummary,
    MonitoringRecord,
    MonitoringRequest,
    MonitoringResponse,
    format_ts,
    new_monitoring_id,
)
from asgard_ray.monitoring.store import RecordStore

__all__ = ["MonitoringState"]

log = logging.getLogger(__name__)
_MAX_KEY = "\U0010ffff"


@dataclass
class _Pending:
    record: MonitoringRecord
    done: threading.Event = field(default_factory=threading.Event)
    error: Exception | None = None


class MonitoringState:
    """Monitoring records and rules for every model, durable on S3 and indexed in memory."""

    def __init__(self, settings: Settings, prefix: str = "monitoring", mirror: bool = True, compact: bool = True) -> None:
        self.settings = settings
        self.store = RecordStore(settings, prefix)
        self._lock = threading.Lock()
        self._keys: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
        self._recs: dict[str, list[MonitoringRecord]] = defaultdict(list)
        self._by_id: dict[str, MonitoringRecord] = {}
        self._pending: dict[str, _Pending] = {}
        self._queue: list[_Pending] = []
        self._committing = False
        self.global_rules, self.model_rules = self.store.load_rules()
        records = self.store.load_all()
        for r in records:
            self._index(r)
        if compact:
            today = format_ts(datetime.now(UTC))[:10]
            threading.Thread(target=self._compact, args=(records, today), name="monitoring-compact", daemon=True).start()
        self.mirror = MlflowMirror(settings) if mirror else None
        if self.mirror is not None:
            self.mirror.start(records)  # resumes in its thread: MLflow being slow or down never blocks monitoring
        log.info("monitoring state ready: %d records, %d models (prefix %s)", len(self._by_id), len(self._recs), prefix)

    def _compact(self, records: list[MonitoringRecord], before_date: str) -> None:
        try:
            self.store.compact(records, before_date)
        except Exception as exc:  # noqa: BLE001 - compaction is an optimisation; the log stays valid
            log.warning("monitoring compaction under %s failed: %s", self.store.records_uri, exc)

    # --- writes --------------------------------------------------------------------------------
    def _index(self, record: MonitoringRecord) -> None:
        key = (record.ts, record.monitoring_id)
        keys, recs = self._keys[record.model_name], self._recs[record.model_name]
        i = bisect.bisect_right(keys, key)
        keys.insert(i, key)
        recs.insert(i, record)
        self._by_id[record.monitoring_id] = record

    def rules_for(self, model_name: str) -> list[AlertRule]:
        """The effective rules of a model."""
        model = self.model_rules.get(model_name)
        return effective_rules(model.rules if model else None, self.global_rules.rules)

    def log(self, request: MonitoringRequest, monitoring_id: str | None = None) -> MonitoringResponse:
        """Evaluate the rules, store the record durably, and return the seed's response.

        A call with an id that is already stored (or being stored) returns that record: retries are safe.
        """
        mid = monitoring_id or request.monitoring_id or new_monitoring_id()
        with self._lock:
            if mid in self._by_id:
                return MonitoringResponse.of(self._by_id[mid])
            pending = self._pending.get(mid)
            if pending is None:
                alerts = evaluate(request.metric_type, request.metrics, self.rules_for(request.model_name))
                record = MonitoringRecord(
                    monitoring_id=mid, model_name=request.model_name, model_version=request.model_version,
                    metric_type=request.metric_type, metrics=request.metrics, alert_triggered=bool(alerts),
                    alerts=alerts, timestamp=format_ts(datetime.now(UTC)), reference_data=request.reference_data,
                    current_data=request.current_data, tags=request.tags,
                )
                pending = _Pending(record)
                self._pending[mid] = pending
                self._queue.append(pending)
                leader = not self._committing
                self._committing = True
            else:
                leader = False
        if leader:
            self._commit_loop()
        pending.done.wait()
        if pending.error is not None:
            raise ServiceUnavailable(
                f"monitoring record {mid} was not stored: {pending.error}; retry with the same monitoring_id"
            ) from pending.error
        return MonitoringResponse.of(pending.record)

    def _commit_loop(self) -> None:
        while True:
            with self._lock:
                batch, self._queue = self._queue, []
                if not batch:
                    self._committing = False
                    return
            groups: dict[tuple[str, str], list[_Pending]] = defaultdict(list)
            for p in batch:
                groups[(p.record.model_name, p.record.timestamp[:10])].append(p)
            try:
                errors = self.store.write_groups({k: [p.record for p in v] for k, v in groups.items()})
            except Exception as exc:  # noqa: BLE001 - never leave waiters hanging or the committer flag set
                errors = dict.fromkeys(groups, exc)
            with self._lock:
                for key, members in groups.items():
                    for p in members:
                        p.error = errors[key]
                        if p.error is None:
                            self._index(p.record)
                        self._pending.pop(p.record.monitoring_id, None)
            for p in batch:
                if p.error is None and self.mirror is not None:
                    self.mirror.enqueue(p.record)
                p.done.set()

    # --- reads ---------------------------------------------------------------------------------
    def models(self) -> dict[str, list[str]]:
        """Every monitored model with its versions."""
        with self._lock:
            return {m: sorted({r.model_version for r in recs}) for m, recs in sorted(self._recs.items()) if recs}

    def count(self) -> int:
        """How many records are stored."""
        with self._lock:
            return len(self._by_id)

    def get(self, monitoring_id: str) -> MonitoringRecord:
        """One record by id."""
        with self._lock:
            if monitoring_id not in self._by_id:
                raise NotFound(f"no monitoring record {monitoring_id!r}")
            return self._by_id[monitoring_id]

    def history(self, query: HistoryRequest) -> HistoryResponse:
        """Records of one model (exact name), newest first, filtered and paged, with a summary.

        A model with no records at all is ``NotFound`` (with close names as hints); a known model whose
        filters match nothing is an empty result.
        """
        with self._lock:
            keys, recs = self._keys.get(query.model_name), self._recs.get(query.model_name)
            if not recs or keys is None:
                close = difflib.get_close_matches(query.model_name, list(self._recs), n=3, cutoff=0.5)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise NotFound(f"no monitoring records for model {query.model_name!r}{hint}")
            lo = 0 if query.start_date is None else bisect.bisect_left(keys, (query.start_date, ""))
            hi = len(keys) if query.end_date is None else bisect.bisect_right(keys, (query.end_date, _MAX_KEY))
            window = recs[lo:hi]
        total = alerts = 0
        types: set[str] = set()
        first: MonitoringRecord | None = None
        last: MonitoringRecord | None = None
        page: list[MonitoringRecord] = []
        for r in reversed(window):
            if query.model_version is not None and r.model_version != query.model_version:
                continue
            if query.metric_type is not None and r.metric_type != query.metric_type:
                continue
            if query.alerts_only and not r.alert_triggered:
                continue
            if query.offset <= total < query.offset + query.limit:
                page.append(r)
            total += 1
            alerts += len(r.alerts)
            types.add(r.metric_type)
            last = last or r
            first = r
        date_range = {
            "start": format_ts(query.start_date) if query.start_date else (first.timestamp if first else None),
            "end": format_ts(query.end_date) if query.end_date else (last.timestamp if last else None),
        }
        return HistoryResponse(
            model_name=query.model_name, model_version=query.model_version, total_records=total, records=page,
            summary=HistorySummary(total_alerts=alerts, metric_types=sorted(types), date_range=date_range),
            limit=query.limit, offset=query.offset, has_more=query.offset + len(page) < total,
        )

    def recent(self, model_name: str | None = None, per_version: int = 200) -> dict[tuple[str, str], list[MonitoringRecord]]:
        """The newest records of each model version (oldest first), for the dashboard."""
        out: dict[tuple[str, str], list[MonitoringRecord]] = defaultdict(list)
        with self._lock:
            names = [model_name] if model_name else list(self._recs)
            for name in names:
                for r in reversed(self._recs.get(name, [])):
                    bucket = out[(name, r.model_version)]
                    if len(bucket) < per_version:
                        bucket.append(r)
        return {k: v[::-1] for k, v in out.items()}

    # --- rules ---------------------------------------------------------------------------------
    def get_rules(self, model_name: str | None = None) -> dict[str, Any]:
        """Stored rules of a scope and the effective list."""
        with self._lock:
            scope = self.model_rules.get(model_name, RuleSet()) if model_name else self.global_rules
            effective = self.rules_for(model_name) if model_name else effective_rules(None, self.global_rules.rules)
        return {
            "scope": f"model:{model_name}" if model_name else "global",
            "rules": [r.model_dump(exclude_none=True) for r in scope.rules],
            "effective": [r.model_dump(exclude_none=True) for r in effective],
        }

    def set_rules(self, model_name: str | None, rules: RuleSet) -> dict[str, Any]:
        """Replace the rules of a scope (global when ``model_name`` is None); durable before it applies."""
        defaults = {r.name for r in DEFAULT_RULES}
        for rule in rules.rules:
            if rule.name not in defaults and (not rule.patterns or rule.op is None or rule.threshold is None):
                raise InvalidRequest(
                    f"rule {rule.name!r} is new, so it needs patterns, op ('gt' or 'lt') and threshold; "
                    f"rules named {', '.join(sorted(defaults))} may give only what they change"
                )
        self.store.save_rules(model_name, rules)
        with self._lock:
            if model_name is None:
                self.global_rules = rules
            else:
                self.model_rules[model_name] = rules
        log.info("monitoring rules for %s set: %d rules", model_name or "all models", len(rules.rules))
        return self.get_rules(model_name)

    # --- MLflow --------------------------------------------------------------------------------
    def mlflow_run_id(self, model_name: str, model_version: str) -> str:
        """The MLflow monitoring run of a model version (created on first use)."""
        if self.mirror is None:
            raise InvalidRequest("the MLflow mirror is off in this monitoring state")
        return self.mirror.run_id(model_name, model_version)

    def flush_mirror(self, timeout: float = 30.0) -> bool:
        """Wait until MLflow has every record; return whether it has."""
        return True if self.mirror is None else self.mirror.flush(timeout)

    def stats(self) -> dict[str, Any]:
        """Counts for health checks."""
        return {
            "records": self.count(),
            "models": len(self._recs),
            "mirror_backlog": self.mirror.backlog() if self.mirror else 0,
            "mirrored": self.mirror.mirrored if self.mirror else 0,
            "prefix": self.store.prefix,
        }
