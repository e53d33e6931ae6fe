"""Durable local files: written whole or not at all, and still there after a crash (as far as the disk honours fsync).

Used by the embedded S3 server's write-through store (``asgard_ray.local.s3disk``) and by the monitoring
write-ahead log (``asgard_ray.monitoring.wal``). Standard library only: the S3 server imports it at start.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

__all__ = ["fsync_dir", "make_dirs", "write_atomic"]


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (new, renamed or removed files) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path) -> None:
    """Create a directory (and parents) durably: each new entry's parent is fsynced."""
    if path.is_dir():
        return
    make_dirs(path.parent)
    # made by a concurrent writer that may not have fsynced it yet? then fsync it here too
    with contextlib.suppress(FileExistsError):
        path.mkdir()
    fsync_dir(path.parent)


def write_atomic(path: Path, chunks: Iterable[bytes]) -> None:
    """Write a file under a temporary name (``.<random>.tmp``), fsync it, rename it into place, fsync the directory."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb", buffering=0) as f:
            for chunk in chunks:
                f.write(chunk)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        if hasattr(chunks, "close"):  # e.g. a generator holding a lock lets go of it now
            chunks.close()
    fsync_dir(path.parent)
