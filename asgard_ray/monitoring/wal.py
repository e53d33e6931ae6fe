"""The monitoring actor's write-ahead log: acknowledge a record once it is on a local disk, upload it after.

A group of records is one file, written under a temporary name, fsynced, renamed into place and its
folder fsynced: a file is whole or absent, never torn. A file is deleted once every record in it is
on S3. After a crash the files left over are read back (``replay``) and their records uploaded; a
record that did reach S3 before the crash is recognised by its id and not written twice.

One process owns a log at a time: ``open_wal`` takes an exclusive ``flock`` on ``<dir>/LOCK``, which
the kernel releases when the process dies (``kill -9`` included), so a restarted actor takes over at
once, and a second live instance of the same store gets ``None`` (it then acknowledges after the PUT).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import IO

from asgard_ray.durable import write_atomic
from asgard_ray.monitoring.schemas import MonitoringRecord

__all__ = ["WriteAheadLog", "open_wal"]

log = logging.getLogger(__name__)

_SUFFIX = ".jsonl"


class WriteAheadLog:
    """Durable local groups of records, each file removed once all its records are uploaded."""

    def __init__(self, root: Path, lock: IO[bytes]) -> None:
        self.root = root
        self._lock_file = lock
        self._mutex = threading.Lock()
        self._open: dict[Path, set[str]] = {}  # file -> ids not yet on S3
        self._file_of: dict[str, Path] = {}

    def append(self, records: list[MonitoringRecord]) -> None:
        """Write ``records`` as one file and make it durable (fsync of the file and of the folder)."""
        path = self.root / f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}{_SUFFIX}"
        lines = [r.model_dump_json().encode() for r in records]
        for r, line in zip(records, lines, strict=True):
            r._size = len(line)
        write_atomic(path, [b"".join(line + b"\n" for line in lines)])
        self._track(path, records)

    def _track(self, path: Path, records: list[MonitoringRecord]) -> None:
        with self._mutex:
            self._open[path] = {r.monitoring_id for r in records}
            for r in records:
                self._file_of[r.monitoring_id] = path

    def uploaded(self, ids: list[str]) -> None:
        """These records are on S3: delete each file none of whose records is still waiting."""
        empty: list[Path] = []
        with self._mutex:
            for mid in ids:
                path = self._file_of.pop(mid, None)
                if path is None:
                    continue
                waiting = self._open.get(path)
                if waiting is not None:
                    waiting.discard(mid)
                    if not waiting:
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
        """The records of the files a previous owner left (oldest first); unreadable files move to ``bad/``."""
        out: list[MonitoringRecord] = []
        for tmp in self.root.glob(".*.tmp"):  # never renamed: never acknowledged
            tmp.unlink(missing_ok=True)
        for path in sorted(self.root.glob(f"*{_SUFFIX}")):
            try:
                records = []
                for line in path.read_bytes().splitlines():
                    if line.strip():
                        records.append(MonitoringRecord.model_validate_json(line))
                        records[-1]._size = len(line)
            except Exception as exc:  # a file is whole or absent, so this is damage from outside: keep it aside
                bad = self.root / "bad"
                bad.mkdir(exist_ok=True)
                os.replace(path, bad / path.name)
                log.error("monitoring write-ahead log file %s is unreadable (%s); moved to %s", path.name, exc, bad)
                continue
            if records:
                self._track(path, records)
                out.extend(records)
            else:
                path.unlink(missing_ok=True)
        return out

    def close(self) -> None:
        """Release the log (its files stay for the next owner)."""
        fcntl.flock(self._lock_file, fcntl.LOCK_UN)
        self._lock_file.close()


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
