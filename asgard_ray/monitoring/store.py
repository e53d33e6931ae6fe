"""The durable monitoring log on S3: JSON-lines objects partitioned by model and date, summaries, rules.

Layout under ``s3://<bucket>/<prefix>/``::

    records/model=<name>/date=<YYYY-MM-DD>/<epoch_ms>-<uuid>.jsonl   one object per commit group
    summaries/model=<name>/date=<YYYY-MM-DD>.json                     counts of a closed partition
    quarantine/...                                                    unreadable objects, each with a .reason.json
    rules/global.json, rules/model=<name>.json                        alert rules

Why S3 objects and not a database: every node of a cluster already reaches the bucket (no extra server
to run), a PUT is atomic (readers see a whole object or none), and the model/date partitions let a
reader (Ray Data, Athena, pandas) scan one model's history without an index. One object holds the
records committed together (group commit), so concurrent writers share one PUT; a record is
acknowledged only after the PUT of its object returned. Records carry their id, so a retried write
that landed twice is deduplicated on read.

One unreadable line (invalid JSON, hostile nesting, wrong types, a record written before today's
limits) never stops a reader: the object is moved to ``quarantine/`` with the reason, its readable
records are written back to the partition, and the count shows in ``stats`` and ``/mlops/status``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from asgard_ray.config import Settings
from asgard_ray.monitoring.rules import RuleSet
from asgard_ray.monitoring.schemas import MonitoringRecord
from asgard_ray.monitoring.summary import PartitionSummary
from asgard_ray.storage import list_files, read_bytes, resolve, write_bytes, write_json

__all__ = ["Partition", "RecordStore"]

log = logging.getLogger(__name__)

Partition = tuple[str, str]
"""(model name, date)"""

_MAX_REASONS = 1000


def _partition_of(path: str) -> Partition | None:
    """``.../model=<m>/date=<d>/<leaf>`` -> (m, d), or None for anything else."""
    parts = path.rsplit("/", 3)
    if len(parts) != 4 or not parts[1].startswith("model=") or not parts[2].startswith("date="):
        return None
    return parts[1][len("model=") :], parts[2][len("date=") :]


class RecordStore:
    """Write and read monitoring records, partition summaries and rules on S3."""

    def __init__(self, settings: Settings, prefix: str = "", io_threads: int = 16) -> None:
        self.settings = settings
        self.prefix = prefix.strip("/")
        """A folder under the monitoring location (``""``: the location itself; tests use a private one)."""
        self.root = settings.state_uri("monitoring", self.prefix)
        self._pool = ThreadPoolExecutor(max_workers=io_threads, thread_name_prefix="monitoring-io")
        self.quarantined_objects = 0
        self.quarantined_records = 0
        self._moved: dict[str, str | None] = {}  # quarantined object -> the object holding its readable records

    # --- locations -----------------------------------------------------------------------------
    @property
    def records_uri(self) -> str:
        """Root of the record partitions."""
        return f"{self.root}/records"

    @property
    def quarantine_uri(self) -> str:
        """Where unreadable objects go."""
        return f"{self.root}/quarantine"

    def _summary_uri(self, part: Partition) -> str:
        return f"{self.root}/summaries/model={part[0]}/date={part[1]}.json"

    def object_uri(self, model_name: str, date: str) -> str:
        """A fresh object name in a model/date partition (time first, so names sort by time)."""
        return f"{self.records_uri}/model={model_name}/date={date}/{int(time.time() * 1000):013d}-{uuid.uuid4().hex[:12]}.jsonl"

    # --- writes --------------------------------------------------------------------------------
    def write_group(self, model_name: str, date: str, records: list[MonitoringRecord]) -> str:
        """Write records of one model and date as one object (one PUT); return its path (bucket/key)."""
        uri = self.object_uri(model_name, date)
        lines = [r.model_dump_json() for r in records]
        for r, line in zip(records, lines, strict=True):
            r._size = len(line)
        body = "".join(line + "\n" for line in lines).encode()
        write_bytes(self.settings, uri, body)
        return uri[len("s3://") :]

    def write_groups(self, groups: dict[Partition, list[MonitoringRecord]]) -> dict[Partition, str | Exception]:
        """Write several groups in parallel; return each group's object path (durable) or its error."""

        def one(key: Partition) -> str | Exception:
            try:
                return self.write_group(key[0], key[1], groups[key])
            except Exception as exc:  # reported to the waiting callers
                log.error("monitoring write of %d records for %s on %s failed: %s", len(groups[key]), key[0], key[1], exc)
                return exc

        if len(groups) == 1:
            key = next(iter(groups))
            return {key: one(key)}
        return dict(zip(groups, self._pool.map(one, list(groups)), strict=True))

    # --- listing and reading -------------------------------------------------------------------
    def list_partitions(self) -> dict[Partition, list[str]]:
        """Every partition's record objects (paths, oldest first). Foreign files are left alone and skipped."""
        out: dict[Partition, list[str]] = {}
        for path in list_files(self.settings, self.records_uri):
            part = _partition_of(path)
            if part is not None and path.endswith(".jsonl"):
                out.setdefault(part, []).append(path)
        return out

    def read_summaries(self) -> dict[Partition, PartitionSummary]:
        """Every stored partition summary; an unreadable one is dropped (its partition is read again instead)."""
        root = f"{self.root}/summaries"
        paths = [p for p in list_files(self.settings, root) if p.endswith(".json")]

        def read(path: str) -> PartitionSummary | None:
            try:
                return PartitionSummary.from_json(json.loads(read_bytes(self.settings, f"s3://{path}")))
            except FileNotFoundError:
                return None
            except Exception as exc:  # a summary is derived data: rebuild it from the records
                log.warning("monitoring summary %s is unreadable (%s); its partition will be read again", path, exc)
                return None

        return {(s.model, s.date): s for s in self._pool.map(read, paths) if s is not None}

    def write_summary(self, summary: PartitionSummary) -> None:
        """Store a closed partition's summary (one PUT)."""
        write_json(self.settings, self._summary_uri((summary.model, summary.date)), summary.to_json())

    def read_object(self, path: str) -> list[MonitoringRecord]:
        """The readable records of one object; unreadable lines send the object to quarantine (raises FileNotFoundError)."""
        raw = read_bytes(self.settings, f"s3://{path}")
        records: list[MonitoringRecord] = []
        bad: list[dict[str, Any]] = []
        part = _partition_of(path)
        for i, line in enumerate(raw.split(b"\n")):
            if not line.strip():
                continue
            try:
                record = MonitoringRecord.model_validate_json(line.decode())
                record._size = len(line)
                if part is not None and (record.model_name, record.timestamp[:10]) != part:
                    raise ValueError(f"record of {record.model_name} on {record.timestamp[:10]} is in partition {part}")
                records.append(record)
            except Exception as exc:  # whatever the line holds, it must not stop the reader
                bad.append({"line": i, "error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"})
        if bad:
            self.quarantine(path, raw, bad, records)
        return records

    def read_partition(self, paths: list[str]) -> list[MonitoringRecord]:
        """The records of some objects, deduplicated by id, oldest first (objects that vanished are skipped)."""

        def read(path: str) -> list[MonitoringRecord]:
            try:
                return self.read_object(path)
            except FileNotFoundError:
                return []  # compacted meanwhile: the merged object is read instead

        seen: dict[str, MonitoringRecord] = {}
        chunks = self._pool.map(read, paths) if len(paths) > 1 else map(read, paths)
        for chunk in chunks:
            for r in chunk:
                seen.setdefault(r.monitoring_id, r)
        return sorted(seen.values(), key=lambda r: (r.timestamp, r.monitoring_id))

    # --- quarantine ----------------------------------------------------------------------------
    def quarantine(self, path: str, raw: bytes, bad: list[dict[str, Any]], good: list[MonitoringRecord]) -> None:
        """Move an object with unreadable lines aside: good records written back first, then the copy, then the delete."""
        rel = f"s3://{path}".removeprefix(self.root + "/")
        part = _partition_of(path)
        try:
            if good and part is not None:
                self._moved[path] = self.write_group(part[0], part[1], good)
            else:
                self._moved[path] = None
            write_bytes(self.settings, f"{self.quarantine_uri}/{rel}", raw)
            write_json(
                self.settings,
                f"{self.quarantine_uri}/{rel}.reason.json",
                {
                    "source": f"s3://{path}",
                    "bad_lines": bad[:_MAX_REASONS],
                    "bad_count": len(bad),
                    "salvaged_records": len(good),
                    "quarantined_at": datetime.now(UTC).isoformat(),
                },
            )
            fs, _ = resolve(self.settings, self.records_uri)
            fs.delete_file(path)
        except Exception as exc:  # the object stays where it is and is skipped again next time
            log.error("could not move unreadable monitoring object %s to quarantine: %s", path, exc)
        self.quarantined_objects += 1
        self.quarantined_records += len(bad)
        log.error(
            "quarantined monitoring object s3://%s: %d unreadable line(s), %d record(s) kept; first problem: %s",
            path,
            len(bad),
            len(good),
            bad[0]["error"],
        )

    def current_paths(self, paths: list[str]) -> list[str]:
        """``paths`` with each quarantined object replaced by the object that holds its readable records."""
        out = []
        for p in paths:
            new = self._moved.get(p, p)
            if new is not None:
                out.append(new)
        return out

    def count_quarantine(self) -> None:
        """Set the quarantine counters from what is stored (earlier runs included)."""
        reasons = [p for p in list_files(self.settings, self.quarantine_uri) if p.endswith(".reason.json")]
        records = 0
        for path in reasons[:_MAX_REASONS]:
            try:
                records += int(json.loads(read_bytes(self.settings, f"s3://{path}")).get("bad_count", 1))
            except Exception:  # a reason we cannot read still counts as one
                records += 1
        self.quarantined_objects = len(reasons)
        self.quarantined_records = records + max(len(reasons) - _MAX_REASONS, 0)

    # --- maintenance ---------------------------------------------------------------------------
    def compact(self, part: Partition, paths: list[str], extra: PartitionSummary | None = None) -> PartitionSummary:
        """Merge a closed partition into one object and store its summary; return the summary.

        Order: merged object, then the summary (which names the objects it replaced), then the deletes.
        A crash in between leaves objects that the summary lists as replaced: readers skip them.
        """
        records = self.read_partition(paths)
        summary = PartitionSummary(model=part[0], date=part[1], replaced=set(extra.replaced) if extra else set())
        for r in records:
            summary.add(r)
        if len(paths) > 1 and records:
            merged = self.write_group(part[0], part[1], records)
            summary.objects = {merged}
            summary.replaced |= set(paths)
        else:
            summary.objects = set(paths)
        self.write_summary(summary)
        fs, _ = resolve(self.settings, self.records_uri)
        for path in sorted(summary.replaced):
            with contextlib.suppress(FileNotFoundError):
                fs.delete_file(path)
        summary.replaced = set()
        if len(paths) > 1:
            self.write_summary(summary)
            log.info("compacted monitoring partition %s/%s: %d objects into 1 (%d records)", *part, len(paths), len(records))
        return summary

    def delete_partition(self, part: Partition, paths: list[str]) -> None:
        """Delete a partition past retention: its summary first, then its objects."""
        fs, _ = resolve(self.settings, self.records_uri)
        for uri in [self._summary_uri(part)[len("s3://") :], *paths]:
            with contextlib.suppress(FileNotFoundError):
                fs.delete_file(uri)
        log.info("deleted monitoring partition %s/%s past retention (%d objects)", *part, len(paths))

    # --- rules ---------------------------------------------------------------------------------
    def _rules_uri(self, model_name: str | None) -> str:
        name = "global.json" if model_name is None else f"model={model_name}.json"
        return f"{self.root}/rules/{name}"

    def load_rules(self) -> tuple[RuleSet, dict[str, RuleSet]]:
        """The global rules and every model's rules; an unreadable rules file is quarantined (its scope falls back)."""
        global_rules = RuleSet()
        per_model: dict[str, RuleSet] = {}
        for path in list_files(self.settings, f"{self.root}/rules"):
            leaf = path.rsplit("/", 1)[-1]
            if leaf != "global.json" and not (leaf.startswith("model=") and leaf.endswith(".json")):
                continue
            raw = read_bytes(self.settings, f"s3://{path}")
            try:
                rules = RuleSet.model_validate_json(raw)
            except Exception as exc:  # one bad file must not stop monitoring
                self.quarantine(path, raw, [{"line": None, "error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"}], [])
                continue
            if leaf == "global.json":
                global_rules = rules
            else:
                per_model[leaf[len("model=") : -len(".json")]] = rules
        return global_rules, per_model

    def save_rules(self, model_name: str | None, rules: RuleSet) -> None:
        """Store one scope's rules (one PUT)."""
        write_json(self.settings, self._rules_uri(model_name), rules.model_dump(mode="json", exclude_none=True))

    def close(self) -> None:
        """Stop the I/O threads."""
        self._pool.shutdown(wait=False)
