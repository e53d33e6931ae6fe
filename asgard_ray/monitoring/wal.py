"""The monitoring actor's write-ahead log: acknowledge a record once it is on a local disk, upload it after.

Records are appended to a segment file, one ``write`` and one ``fdatasync`` per group of records; a
new segment's folder entry is fsynced before anything in it is acknowledged. A segment is deleted once
every record in it is on S3, so a file exists only while it holds records still to upload. After a
crash the segments left over are read back (``replay``) and their records uploaded; a record that did
reach S3 before the crash is recognised by its id and not written twice. A crash during an append can
leave a torn last line: it was never acknowledged, and replay drops it.

One process owns a log at a time: ``open_wal`` takes an exclusive ``flock`` on ``<dir>/LOCK``, which
the kernel releases when the process dies (``kill -9`` included), so a restarted actor takes over at
once, and a second live instance of the same store gets ``None`` (it then acknowledges after the PUT).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from asgard_ray.durable import fsync_dir, write_atomic
from asgard_ray.monitoring.schemas import MonitoringRecord

__all__ = ["SEGMENT_BYTES", "WriteAheadLog", "open_wal"]

log = logging.getLogger(__name__)

_SUFFIX = ".jsonl"
SEGMENT_BYTES = 4 << 20  # a segment this large takes no more appends (its records still upload as usual)


@dataclass
class _Segment:
    path: Path
    fd: int
    size: int = 0
    waiting: set[str] = field(default_factory=set)  # ids not yet on S3


class WriteAheadLog:
    """Durable local segments of records, each deleted once all its records are uploaded."""

    def __init__(self, root: Path, lock: IO[bytes]) -> None:
        self.root = root
        self._lock_file = lock
        self._mutex = threading.Lock()
        self._active: _Segment | None = None  # the segment appends go to
        self._open: dict[Path, set[str]] = {}  # segment -> ids not yet on S3
        self._file_of: dict[str, Path] = {}

    def append(self, records: list[MonitoringRecord]) -> None:
        """Append ``records`` to the active segment and make them durable (one write, one fdatasync).

        On an error nothing of ``records`` counts as written: the segment is cut back to its old end
        and closed, and the next append starts a new one.
        """
        lines = [r.model_dump_json().encode() for r in records]
        for r, line in zip(records, lines, strict=True):
            r._size = len(line)
        data = b"".join(line + b"\n" for line in lines)
        with self._mutex:
            seg = self._active or self._start_segment()
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(seg.fd, view) :]
                os.fdatasync(seg.fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.ftruncate(seg.fd, seg.size)
                    os.fdatasync(seg.fd)
                self._retire(seg)
                raise
            seg.size += len(data)
            ids = {r.monitoring_id for r in records}
            seg.waiting |= ids
            for mid in ids:
                self._file_of[mid] = seg.path
            if seg.size >= SEGMENT_BYTES:
                self._retire(seg)

    def _start_segment(self) -> _Segment:
        """A new, empty segment whose folder entry is durable (under the mutex)."""
        path = self.root / f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}{_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        try:
            fsync_dir(self.root)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        seg = self._active = _Segment(path, fd)
        self._open[path] = seg.waiting
        return seg

    def _retire(self, seg: _Segment) -> None:
        """Take no more appends into ``seg``; delete it at once when none of its records is waiting (under the mutex)."""
        if self._active is seg:
            self._active = None
            os.close(seg.fd)
        if not seg.waiting:
            self._open.pop(seg.path, None)
            seg.path.unlink(missing_ok=True)

    def uploaded(self, ids: list[str]) -> None:
        """These records are on S3: delete each segment none of whose records is still waiting."""
        empty: list[Path] = []
        with self._mutex:
            for mid in ids:
                path = self._file_of.pop(mid, None)
                if path is None:
                    continue
                waiting = self._open.get(path)
                if waiting is None:
                    continue
                waiting.discard(mid)
                if waiting:
                    continue
                if self._active is not None and self._active.path == path:
                    self._retire(self._active)  # drained: the next append starts a new segment
                else:
                    del self._open[path]
                    empty.append(path)
        for path in empty:
            path.unlink(missing_ok=True)

    @property
    def pending(self) -> int:
        """Records acknowledged and not yet on S3."""
        with self._mutex:
            return len(self._file_of)

    def replay(self) -> list[MonitoringRecord]:
        """The records of the segments a previous owner left (oldest first).

        A torn last line (a crash during an append, never acknowledged) is dropped. Any other line
        that does not parse is damage from outside: it is kept in ``bad/`` and the rest replayed.
        """
        out: list[MonitoringRecord] = []
        for tmp in self.root.glob(".*.tmp"):  # left by the file-per-group log of older versions: never acknowledged
            tmp.unlink(missing_ok=True)
        for path in sorted(self.root.glob(f"*{_SUFFIX}")):
            records, damaged = _read_segment(path)
            if damaged:
                bad = self.root / "bad"
                bad.mkdir(exist_ok=True)
                write_atomic(bad / path.name, [line + b"\n" for line in damaged])
                log.error(
                    "monitoring write-ahead log %s: %d unreadable lines kept in %s; its other %d records are replayed",
                    path.name,
                    len(damaged),
                    bad,
                    len(records),
                )
            if records:
                with self._mutex:
                    self._open[path] = {r.monitoring_id for r in records}
                    for r in records:
                        self._file_of[r.monitoring_id] = path
                out.extend(records)
            else:
                path.unlink(missing_ok=True)
        return out

    def close(self) -> None:
        """Release the log (segments with records still waiting stay for the next owner)."""
        with self._mutex:
            if self._active is not None:
                self._retire(self._active)
        fcntl.flock(self._lock_file, fcntl.LOCK_UN)
        self._lock_file.close()


def _read_segment(path: Path) -> tuple[list[MonitoringRecord], list[bytes]]:
    """The records of one segment, and its damaged lines (a torn last line is neither)."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()  # empty when the segment ends with a newline, as every whole append does
    if tail.strip():
        log.warning("monitoring write-ahead log %s: dropping a torn last line of %d bytes (never acknowledged)", path.name, len(tail))
    records: list[MonitoringRecord] = []
    damaged: list[bytes] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            record = MonitoringRecord.model_validate_json(line)
        except ValueError:
            damaged.append(line)
            continue
        record._size = len(line)
        records.append(record)
    return records, damaged


def open_wal(base: Path, store_uri: str) -> WriteAheadLog | None:
    """Take the log of the store at ``store_uri`` under ``base``, or ``None`` when a live process holds it."""
    root = base.absolute() / hashlib.sha256(store_uri.encode()).hexdigest()[:16]
    root.mkdir(parents=True, exist_ok=True)
    (root / "STORE").write_text(store_uri + "\n")  # which store this log belongs to, for a person looking
    lock = open(root / "LOCK", "ab")  # noqa: SIM115 - held for the life of the log
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        log.warning("monitoring write-ahead log %s is held by another live process; acknowledging after the S3 PUT", root)
        return None
    return WriteAheadLog(root, lock)
