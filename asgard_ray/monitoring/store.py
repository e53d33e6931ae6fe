"""The durable monitoring log on S3: JSON-lines objects partitioned by model and date, plus rules.

Layout under ``s3://<bucket>/<prefix>/``::

    records/model=<name>/date=<YYYY-MM-DD>/<epoch_ms>-<uuid>.jsonl   one object per commit group
    rules/global.json, rules/model=<name>.json                        alert rules

Why S3 objects and not a database: every node of a cluster already reaches the bucket (no extra server
to run), a PUT is atomic (readers see a whole object or none), and the model/date partitions let a
reader (Ray Data, Athena, pandas) scan one model's history without an index. One object holds the
records committed together (group commit), so concurrent writers share one PUT; a record is
acknowledged only after the PUT of its object returned. Records carry their id, so a retried write
that landed twice is deduplicated on load.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from asgard_ray.config import Settings
from asgard_ray.monitoring.rules import RuleSet
from asgard_ray.monitoring.schemas import MonitoringRecord
from asgard_ray.storage import exists, list_files, read_bytes, read_json, resolve, write_bytes, write_json

__all__ = ["RecordStore"]

log = logging.getLogger(__name__)


class RecordStore:
    """Write and read monitoring records and rules on S3."""

    def __init__(self, settings: Settings, prefix: str = "monitoring", io_threads: int = 16) -> None:
        self.settings = settings
        self.prefix = prefix.strip("/")
        self._pool = ThreadPoolExecutor(max_workers=io_threads, thread_name_prefix="monitoring-io")

    # --- records -------------------------------------------------------------------------------
    @property
    def records_uri(self) -> str:
        """Root of the record partitions."""
        return self.settings.s3_uri(self.prefix, "records")

    def object_uri(self, model_name: str, date: str) -> str:
        """A fresh object name in a model/date partition (time first, so names sort by time)."""
        return f"{self.records_uri}/model={model_name}/date={date}/{int(time.time() * 1000):013d}-{uuid.uuid4().hex[:12]}.jsonl"

    def write_group(self, model_name: str, date: str, records: list[MonitoringRecord]) -> str:
        """Write records of one model and date as one object (one PUT); return its URI."""
        uri = self.object_uri(model_name, date)
        body = "".join(r.model_dump_json() + "\n" for r in records).encode()
        write_bytes(self.settings, uri, body)
        return uri

    def write_groups(self, groups: dict[tuple[str, str], list[MonitoringRecord]]) -> dict[tuple[str, str], Exception | None]:
        """Write several groups in parallel; return each group's error (None when durable)."""
        def one(key: tuple[str, str]) -> Exception | None:
            try:
                self.write_group(key[0], key[1], groups[key])
                return None
            except Exception as exc:  # noqa: BLE001 - reported to the waiting callers
                log.error("monitoring write of %d records for %s on %s failed: %s", len(groups[key]), key[0], key[1], exc)
                return exc

        if len(groups) == 1:
            key = next(iter(groups))
            return {key: one(key)}
        return dict(zip(groups, self._pool.map(one, list(groups)), strict=True))

    def load_all(self) -> list[MonitoringRecord]:
        """Read every record (deduplicated by id), oldest first.

        An object that vanished between listing and reading was compacted meanwhile (its records are in
        a newer object), so the load starts over with a fresh listing.
        """
        for attempt in range(5):
            try:
                return self._load_all()
            except FileNotFoundError:
                log.info("monitoring objects changed during load (compaction); listing again (try %d)", attempt + 2)
        return self._load_all()

    def _load_all(self) -> list[MonitoringRecord]:
        started = time.perf_counter()
        files = [f for f in list_files(self.settings, self.records_uri) if f.endswith(".jsonl")]

        def read(path: str) -> list[MonitoringRecord]:
            text = read_bytes(self.settings, f"s3://{path}").decode()
            return [MonitoringRecord.model_validate_json(line) for line in text.splitlines() if line.strip()]

        seen: dict[str, MonitoringRecord] = {}
        self._partitions: dict[str, list[str]] = {}
        for path, chunk in zip(files, self._pool.map(read, files), strict=True):
            self._partitions.setdefault(path.rsplit("/", 1)[0], []).append(path)
            for record in chunk:
                seen.setdefault(record.monitoring_id, record)
        records = sorted(seen.values(), key=lambda r: (r.ts, r.monitoring_id))
        log.info("loaded %d monitoring records from %d objects under %s in %.2fs",
                 len(records), len(files), self.records_uri, time.perf_counter() - started)
        return records

    def compact(self, records: list[MonitoringRecord], before_date: str) -> int:
        """Merge each closed partition (date before ``before_date``) of many objects into one; return objects removed.

        Only past dates are compacted, and no writer adds to them (records are stamped when written). The
        merged object is written before the originals are deleted; a crash in between leaves duplicates
        that ``load_all`` drops by id. Uses the listing of the last ``load_all``.
        """
        by_partition: dict[str, list[MonitoringRecord]] = {}
        for r in records:
            by_partition.setdefault(f"model={r.model_name}/date={r.timestamp[:10]}", []).append(r)
        removed = 0
        for folder, paths in getattr(self, "_partitions", {}).items():
            key = folder.split("/records/", 1)[-1]
            date = key.rsplit("date=", 1)[-1]
            if len(paths) < 2 or date >= before_date or key not in by_partition:
                continue
            model = key.split("/", 1)[0][len("model="):]
            self.write_group(model, date, by_partition[key])
            fs, _ = resolve(self.settings, self.records_uri)
            for path in paths:
                fs.delete_file(path)
            removed += len(paths) - 1
        if removed:
            log.info("compacted monitoring records under %s: %d objects fewer", self.records_uri, removed)
        return removed

    # --- rules ---------------------------------------------------------------------------------
    def _rules_uri(self, model_name: str | None) -> str:
        name = "global.json" if model_name is None else f"model={model_name}.json"
        return self.settings.s3_uri(self.prefix, "rules", name)

    def load_rules(self) -> tuple[RuleSet, dict[str, RuleSet]]:
        """The global rules and every model's rules."""
        glob_uri = self._rules_uri(None)
        global_rules = RuleSet.model_validate(read_json(self.settings, glob_uri)) if exists(self.settings, glob_uri) else RuleSet()
        per_model: dict[str, RuleSet] = {}
        for path in list_files(self.settings, self.settings.s3_uri(self.prefix, "rules")):
            leaf = path.rsplit("/", 1)[-1]
            if leaf.startswith("model=") and leaf.endswith(".json"):
                per_model[leaf[len("model="):-len(".json")]] = RuleSet.model_validate(read_json(self.settings, f"s3://{path}"))
        return global_rules, per_model

    def save_rules(self, model_name: str | None, rules: RuleSet) -> None:
        """Store one scope's rules (one PUT)."""
        write_json(self.settings, self._rules_uri(model_name), rules.model_dump(mode="json", exclude_none=True))

    def iter_partition_dates(self, model_name: str) -> Iterable[str]:
        """Dates that hold records of a model (for offline readers)."""
        root = f"{self.records_uri}/model={model_name}/"
        dates = {p.split("/date=", 1)[1].split("/", 1)[0] for p in list_files(self.settings, root) if "/date=" in p}
        return sorted(dates)

    def close(self) -> None:
        """Stop the I/O threads."""
        self._pool.shutdown(wait=False)

