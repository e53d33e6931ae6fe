"""The monitoring state as a plain class: durable log, bounded memory, summaries, rules, history queries.

``MonitoringActor`` (``asgard_ray.monitoring.actor``) wraps one instance in a named Ray actor; tests
use it directly. Writes use group commit: the first caller to find no commit in flight becomes the
committer and makes everything queued meanwhile durable, then every waiter is acknowledged. Durable
means one of two things (``wal_dir``, from ``ASGARD_MONITORING_ACK``):

- without a write-ahead log, the group's S3 PUT returned (one PUT per model and date); no record is
  acknowledged, held or mirrored before that;
- with one (``asgard_ray.monitoring.wal``), the group is appended to a local segment file and
  fdatasynced; an uploader thread writes it to S3 about ``UPLOAD_LINGER_S`` later, retrying until it
  lands, and a new owner of the log replays what a crashed one left (each record once, by id).

Memory is bounded: the newest records (``ASGARD_MONITORING_MEMORY_RECORDS`` / ``_MB``) plus one small
summary per model and date. A rebuild reads the stored summaries, the objects no summary covers, and
the newest days up to the memory cap; a background pass summarises and compacts closed days and
deletes days past ``ASGARD_MONITORING_RETENTION_DAYS``. Unreadable records are quarantined, never fatal.
"""

from __future__ import annotations

import difflib
import logging
import threading
import time
from collections import defaultdict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from asgard_ray import metrics
from asgard_ray.config import Settings
from asgard_ray.errors import InvalidRequest, NotFound, ServiceUnavailable
from asgard_ray.monitoring.history import query_history
from asgard_ray.monitoring.mirror import MlflowMirror
from asgard_ray.monitoring.rules import DEFAULT_RULES, AlertRule, RuleSet, effective_rules, fired
from asgard_ray.monitoring.schemas import (
    HistoryRequest,
    HistoryResponse,
    MonitoringRecord,
    MonitoringRequest,
    MonitoringResponse,
    format_ts,
    new_monitoring_id,
)
from asgard_ray.monitoring.store import Partition, RecordStore
from asgard_ray.monitoring.summary import PartitionSummary
from asgard_ray.monitoring.telemetry import export_latest, export_record
from asgard_ray.monitoring.wal import open_wal
from asgard_ray.monitoring.window import MemoryWindow, day_bounds

__all__ = ["COMPACT_OBJECTS", "UPLOAD_LINGER_S", "MonitoringState"]

log = logging.getLogger(__name__)

COMPACT_OBJECTS = 16
"""A closed day with more objects than this is merged into one (fewer objects, faster rebuilds)."""
_MAINTENANCE_EVERY_S = 3600.0
UPLOAD_LINGER_S = 0.1
"""How long the uploader gathers acknowledged records before it writes them (at most this late on S3)."""


@dataclass
class _Pending:
    record: MonitoringRecord
    done: threading.Event = field(default_factory=threading.Event)
    error: Exception | None = None


def _today() -> str:
    return format_ts(datetime.now(UTC))[:10]


class MonitoringState:
    """Monitoring records and rules for every model, stored on S3 (through a write-ahead log when given one), the newest held in memory."""

    def __init__(
        self,
        settings: Settings,
        prefix: str = "",
        mirror: bool = True,
        compact: bool = True,
        memory_records: int | None = None,
        memory_mb: float | None = None,
        wal_dir: Path | None = None,
    ) -> None:
        self.settings = settings
        self.store = RecordStore(settings, prefix)
        self.retention_days = settings.asgard_monitoring_retention_days
        self._lock = threading.Lock()
        self.window = MemoryWindow(
            memory_records or settings.asgard_monitoring_memory_records,
            int((memory_mb or settings.asgard_monitoring_memory_mb) * 1024 * 1024),
        )
        self._summaries: dict[Partition, PartitionSummary] = {}
        self._objects: dict[Partition, list[str]] = defaultdict(list)
        self._clean: set[Partition] = set()  # closed days whose stored summary matches their objects
        self._pending: dict[str, _Pending] = {}
        self._queue: list[_Pending] = []
        self._committing = False
        self._stop = threading.Event()
        self.maintenance_done = threading.Event()
        self.global_rules, self.model_rules = self.store.load_rules()
        self.rebuild_s = self._rebuild()
        self.wal = open_wal(wal_dir, self.store.records_uri) if wal_dir is not None else None
        self._uploads: list[MonitoringRecord] = []  # acknowledged (in the write-ahead log), not yet on S3
        self._upload_cv = threading.Condition(self._lock)
        self._uploading = False
        if self.wal is not None:
            replayed = self._replay()
            threading.Thread(target=self._upload_loop, name="monitoring-upload", daemon=True).start()
        self.store.count_quarantine()
        export_latest(self.window.records())  # a restarted actor's drift gauges come back from what it rebuilt
        if compact:
            threading.Thread(target=self._maintain, name="monitoring-maintenance", daemon=True).start()
        else:
            self.maintenance_done.set()
        self.mirror = MlflowMirror(settings) if mirror else None
        if self.mirror is not None:
            self.mirror.start(self.window.records())  # resumes in its thread: MLflow being down never blocks monitoring
        log.info(
            "monitoring state ready in %.2fs: %d records (%d in memory), %d models, %d quarantined (prefix %s); %s",
            self.rebuild_s,
            self.count(),
            len(self.window),
            len(self.models()),
            self.store.quarantined_records,
            prefix,
            f"acknowledged from the write-ahead log {self.wal.root} ({replayed} records replayed)"
            if self.wal
            else "acknowledged after the S3 PUT",
        )

    # --- rebuild and maintenance ---------------------------------------------------------------
    def _cutoff(self) -> str | None:
        if self.retention_days <= 0:
            return None
        return (datetime.now(UTC) - timedelta(days=self.retention_days)).strftime("%Y-%m-%d")

    def _plan(self) -> list[tuple[Partition, PartitionSummary | None, list[str], list[str], bool]]:
        """Newest day first: (partition, stored summary, its objects, objects no summary covers, read whole?)."""
        listing = self.store.list_partitions()
        stored = self.store.read_summaries()
        cutoff = self._cutoff()
        plan = []
        expected = 0  # records the newer days hold (unknown days count 0: they are read whole anyway)
        for part in sorted(set(listing) | set(stored), key=lambda p: p[1], reverse=True):
            summary = stored.get(part)
            paths = [p for p in listing.get(part, []) if summary is None or p not in summary.replaced]
            if cutoff is not None and part[1] < cutoff:
                self._objects[part] = paths  # deleted by the maintenance pass
                continue
            extra = [p for p in paths if summary is None or p not in summary.objects]
            whole = expected < self.window.max_records or summary is None
            expected += summary.total if summary is not None and not extra else 0
            plan.append((part, summary, paths, extra, whole))
        return plan

    def _rebuild(self) -> float:
        started = time.perf_counter()
        plan = self._plan()
        held = 0
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="monitoring-rebuild") as pool:
            reads: deque[Future[list[MonitoringRecord]]] = deque()
            ahead = iter(plan)
            for part, summary, paths, extra, whole in plan:
                while len(reads) < 8:  # a bounded read-ahead: parallel GETs, bounded memory
                    nxt = next(ahead, None)
                    if nxt is None:
                        break
                    reads.append(pool.submit(self.store.read_partition, nxt[2] if nxt[4] else nxt[3]))
                records = reads.popleft().result()
                if whole and held < self.window.max_records and self.window.bytes < self.window.max_bytes:
                    fresh = PartitionSummary(part[0], part[1])  # the newest days are held in memory
                    for r in records:
                        fresh.add(r)
                        self.window.add(r, r.size)
                    held += len(records)
                    clean = summary is not None and not extra and fresh.total == summary.total
                    summary = fresh
                else:
                    self.window.forget_through(day_bounds(part[1])[1])  # this day is read from S3 when asked for
                    clean = summary is not None and not extra
                    if summary is None or whole:
                        summary = PartitionSummary(part[0], part[1])
                        extra = paths
                    for r in records if extra else []:
                        summary.add(r)
                paths = self.store.current_paths(paths)
                summary.objects = set(paths)
                self._objects[part] = paths
                if clean:
                    self._clean.add(part)
                if paths:
                    self._summaries[part] = summary
        return time.perf_counter() - started

    def _maintain(self) -> None:
        while not self._stop.is_set():
            try:
                self.maintain()
            except Exception as exc:  # maintenance is an optimisation; the log stays valid
                log.warning("monitoring maintenance under %s failed: %s", self.store.records_uri, exc)
            self.maintenance_done.set()
            self._stop.wait(_MAINTENANCE_EVERY_S)

    def maintain(self) -> dict[str, int]:
        """Delete days past retention, then summarise (and merge, when fragmented) closed days; return counts."""
        cutoff = self._cutoff()
        closed_before = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")  # a day's late commits land first
        deleted = summarised = 0
        with self._lock:
            parts = {p: list(paths) for p, paths in self._objects.items()}
        for part, paths in sorted(parts.items(), key=lambda kv: kv[0][1]):
            if cutoff is not None and part[1] < cutoff:
                self.store.delete_partition(part, paths)
                with self._lock:
                    self._summaries.pop(part, None)
                    self._objects.pop(part, None)
                    self._clean.discard(part)
                    self.window.forget_through(day_bounds(part[1])[1], move_horizon=False)
                deleted += 1
            elif part[1] < closed_before and part not in self._clean and paths:
                if len(paths) > COMPACT_OBJECTS:
                    summary = self.store.compact(part, paths)
                else:
                    with self._lock:
                        summary = self._summaries.get(part) or PartitionSummary(part[0], part[1])
                    summary.objects = set(paths)
                    self.store.write_summary(summary)
                with self._lock:
                    self._summaries[part] = summary
                    self._objects[part] = sorted(summary.objects)
                    self._clean.add(part)
                summarised += 1
        if deleted or summarised:
            log.info(
                "monitoring maintenance under %s: %d days past retention deleted, %d closed days summarised",
                self.store.records_uri,
                deleted,
                summarised,
            )
        return {"deleted": deleted, "summarised": summarised}

    def close(self) -> None:
        """Stop the background threads (state on S3 is complete at every moment)."""
        self._stop.set()
        if self.wal is not None:
            self.flush_uploads(timeout=10.0)  # what is left stays in the log for the next owner
            with self._lock:
                self._upload_cv.notify_all()
            self.wal.close()
        if self.mirror is not None:
            self.mirror.stop()
        self.store.close()

    # --- writes --------------------------------------------------------------------------------
    def rules_for(self, model_name: str) -> list[AlertRule]:
        """The effective rules of a model."""
        model = self.model_rules.get(model_name)
        return effective_rules(model.rules if model else None, self.global_rules.rules)

    def log(self, request: MonitoringRequest, monitoring_id: str | None = None) -> MonitoringResponse:
        """Evaluate the rules, store the record durably, and return the seed's response.

        A call with an id that is held in memory (or being stored) returns that record: retries are safe
        (a retry comes seconds after its first try, well inside the memory window).
        """
        mid = monitoring_id or request.monitoring_id or new_monitoring_id()
        with self._lock:
            held = self.window.get(mid)
            if held is not None:
                return MonitoringResponse.of(held)
            pending = self._pending.get(mid)
            breaches: list[tuple[str, str]] | None = None  # set when this call makes the record
            if pending is None:
                breaches = fired(request.metric_type, request.metrics, self.rules_for(request.model_name))
                alerts = [message for _, message in breaches]
                record = MonitoringRecord(
                    monitoring_id=mid,
                    model_name=request.model_name,
                    model_version=request.model_version,
                    metric_type=request.metric_type,
                    metrics=request.metrics,
                    alert_triggered=bool(alerts),
                    alerts=alerts,
                    timestamp=format_ts(datetime.now(UTC)),
                    reference_data=request.reference_data,
                    current_data=request.current_data,
                    tags=request.tags,
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
        if breaches is not None:  # stored now, by this call: its drift scores and alerts go to the metrics once
            export_record(pending.record, breaches)
        return MonitoringResponse.of(pending.record)

    def _commit_loop(self) -> None:
        while True:
            with self._lock:
                batch, self._queue = self._queue, []
                if not batch:
                    self._committing = False
                    return
            if self.wal is not None:
                self._log_ahead(batch)
                continue
            groups: dict[Partition, list[_Pending]] = defaultdict(list)
            for p in batch:
                groups[(p.record.model_name, p.record.timestamp[:10])].append(p)
            try:
                results = self.store.write_groups({k: [p.record for p in v] for k, v in groups.items()})
            except Exception as exc:  # never leave waiters hanging or the committer flag set
                results = dict.fromkeys(groups, exc)
            with self._lock:
                for key, members in groups.items():
                    result = results[key]
                    if isinstance(result, str):
                        self._objects[key].append(result)
                        self._clean.discard(key)
                        summary = self._summaries.setdefault(key, PartitionSummary(key[0], key[1]))
                    for p in members:
                        if isinstance(result, Exception):
                            p.error = result
                        else:
                            summary.add(p.record)
                            self.window.add(p.record, p.record.size)
                        self._pending.pop(p.record.monitoring_id, None)
            for p in batch:
                if p.error is None and self.mirror is not None:
                    self.mirror.enqueue(p.record)
                p.done.set()

    # --- the write-ahead log -------------------------------------------------------------------
    def _hold(self, record: MonitoringRecord) -> None:
        """Count and hold an acknowledged record (under the lock)."""
        key = (record.model_name, record.timestamp[:10])
        self._summaries.setdefault(key, PartitionSummary(key[0], key[1])).add(record)
        self.window.add(record, record.size)

    def _log_ahead(self, batch: list[_Pending]) -> None:
        """Acknowledge a batch once it is in the write-ahead log (one append, one fdatasync); S3 follows."""
        assert self.wal is not None
        try:
            self.wal.append([p.record for p in batch])
            error: Exception | None = None
        except Exception as exc:  # a full or failing disk: nothing was acknowledged
            log.error("monitoring write-ahead log append of %d records failed: %s", len(batch), exc)
            error = exc
        with self._lock:
            for p in batch:
                if error is None:
                    self._hold(p.record)
                    self._uploads.append(p.record)
                else:
                    p.error = error
                self._pending.pop(p.record.monitoring_id, None)
            self._upload_cv.notify_all()
        for p in batch:
            if error is None and self.mirror is not None:
                self.mirror.enqueue(p.record)  # in acknowledgement order, which is time order
            p.done.set()
        metrics.wal_backlog(self.wal.pending)  # after the acknowledgements: never on their path

    def _replay(self) -> int:
        """Take over the records a crashed owner acknowledged but did not upload; return how many."""
        assert self.wal is not None
        stored: dict[Partition, set[str]] = {}
        done: list[str] = []
        for record in self.wal.replay():
            key = (record.model_name, record.timestamp[:10])
            if self.window.covers(key[1]):
                on_s3 = self.window.get(record.monitoring_id) is not None
            else:  # a day not held in memory: its ids come from S3
                if key not in stored:
                    stored[key] = {r.monitoring_id for r in self.store.read_partition(self._objects.get(key, []))}
                on_s3 = record.monitoring_id in stored[key]
            if on_s3:
                done.append(record.monitoring_id)
            else:
                self._hold(record)
                self._uploads.append(record)
        self.wal.uploaded(done)
        return len(self._uploads)

    def _upload_loop(self) -> None:
        """Upload acknowledged records to S3 (one PUT per model and date per round); retry until they land."""
        assert self.wal is not None
        backoff = 0.0
        while True:
            with self._lock:
                while not self._uploads and not self._stop.is_set():
                    self._upload_cv.wait()
                if not self._uploads:
                    return
                self._uploading = True
            self._stop.wait(UPLOAD_LINGER_S)  # gather what arrives meanwhile: one PUT per model and date for all of it
            with self._lock:
                batch, self._uploads = self._uploads, []
            groups: dict[Partition, list[MonitoringRecord]] = defaultdict(list)
            for r in batch:
                groups[(r.model_name, r.timestamp[:10])].append(r)
            try:
                results: dict[Partition, str | Exception] = self.store.write_groups(dict(groups))
            except Exception as exc:
                results = dict.fromkeys(groups, exc)
            landed: list[str] = []
            with self._lock:
                failed = [r for key, result in results.items() if isinstance(result, Exception) for r in groups[key]]
                for key, result in results.items():
                    if isinstance(result, str):
                        self._objects[key].append(result)
                        self._clean.discard(key)
                        landed.extend(r.monitoring_id for r in groups[key])
                self._uploads = failed + self._uploads
                self._uploading = False
                self._upload_cv.notify_all()
            self.wal.uploaded(landed)
            metrics.wal_backlog(self.wal.pending)
            if failed:  # S3 is down or refusing: the records wait in the log; retry with a growing pause
                backoff = min(5.0, max(0.1, backoff * 2))
                log.warning("monitoring upload of %d records failed; retrying in %.1fs", len(failed), backoff)
                if self._stop.wait(backoff):
                    return
            else:
                backoff = 0.0

    def flush_uploads(self, timeout: float = 30.0) -> bool:
        """Wait until every acknowledged record is on S3; return whether it is (always true without the log)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._uploads or self._uploading:
                left = deadline - time.monotonic()
                if left <= 0 or (self._stop.is_set() and not self._uploading):
                    return False
                self._upload_cv.wait(left)
        return True

    # --- reads ---------------------------------------------------------------------------------
    def models(self) -> dict[str, list[str]]:
        """Every monitored model with its versions."""
        out: dict[str, set[str]] = defaultdict(set)
        with self._lock:
            for (model, _), summary in self._summaries.items():
                out[model] |= summary.versions()
        return {m: sorted(v) for m, v in sorted(out.items()) if v}

    def count(self) -> int:
        """How many records are stored (within retention)."""
        with self._lock:
            return sum(s.total for s in self._summaries.values())

    def get(self, monitoring_id: str) -> MonitoringRecord:
        """One record by id (among those held in memory: the newest ones)."""
        with self._lock:
            record = self.window.get(monitoring_id)
        if record is None:
            raise NotFound(
                f"no monitoring record {monitoring_id!r} among the {len(self.window)} newest; "
                "older records are in POST /mlops/monitoring/history with their model and dates"
            )
        return record

    def _day(self, model: str, date: str) -> list[MonitoringRecord]:
        with self._lock:
            if self.window.covers(date):
                return list(self.window.day(model, date))
            paths = list(self._objects.get((model, date), []))
        records = self.store.read_partition(paths)
        moved = self.store.current_paths(paths)
        if moved != paths:  # an object was quarantined on the way: its readable records moved to a new object
            with self._lock:
                self._objects[(model, date)] = moved
        return records

    def history(self, query: HistoryRequest) -> HistoryResponse:
        """Records of one model (exact name), newest first, filtered and paged, with a summary.

        A model with no records at all is ``NotFound`` (with close names as hints); a known model whose
        filters match nothing is an empty result.
        """
        with self._lock:
            parts = {d: s for (m, d), s in self._summaries.items() if m == query.model_name and s.total}
            names = {m for (m, _), s in self._summaries.items() if s.total}
        if not parts:
            close = difflib.get_close_matches(query.model_name, sorted(names), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise NotFound(f"no monitoring records for model {query.model_name!r}{hint}")
        return query_history(query, parts, lambda date: self._day(query.model_name, date))

    def recent(self, model_name: str | None = None, per_version: int = 200) -> dict[tuple[str, str], list[MonitoringRecord]]:
        """The newest held records of each model version (oldest first), for the dashboard."""
        with self._lock:
            names = [model_name] if model_name else sorted({r.model_name for r in self.window.records()})
            return {(name, v): rs for name in names for v, rs in self.window.newest(name, per_version).items()}

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
        """Counts for health checks and ``/mlops/status``."""
        with self._lock:
            held, held_bytes, horizon = len(self.window), self.window.bytes, self.window.horizon
        return {
            "records": self.count(),
            "models": len(self.models()),
            "records_in_memory": held,
            "memory_bytes": held_bytes,
            "memory_horizon": horizon[0] if horizon else None,
            "quarantined_objects": self.store.quarantined_objects,
            "quarantined_records": self.store.quarantined_records,
            "rebuild_s": round(self.rebuild_s, 3),
            "acknowledged_by": "wal" if self.wal else "s3",
            "upload_backlog": self.wal.pending if self.wal else 0,
            "mirror_backlog": self.mirror.backlog() if self.mirror else 0,
            "mirrored": self.mirror.mirrored if self.mirror else 0,
            "prefix": self.store.prefix,
        }
