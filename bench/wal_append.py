"""Write-ahead log benchmark: acknowledging one monitoring record, segment append vs one file per group.

Run: ``.venv/bin/python bench/wal_append.py`` (``--records 2000``). No servers: it times
``WriteAheadLog.append`` of one record (what the monitoring actor does per write at low load), on the
same disk as the log (``ASGARD_HOME``'s, or ``--dir``), against the file-per-group log it replaced,
measured in the same run: ``write_atomic`` of the same bytes (temporary file, fsync, rename, fsync of
the folder), then its deletion once "uploaded". Prints p50/p99 of each and their ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asgard_ray.durable import write_atomic  # noqa: E402
from asgard_ray.monitoring.schemas import MonitoringRecord  # noqa: E402
from asgard_ray.monitoring.wal import open_wal  # noqa: E402


def record(i: int) -> MonitoringRecord:
    return MonitoringRecord(
        monitoring_id=f"mon_bench_{i:08d}",
        model_name="bench_wal",
        model_version="1",
        metric_type="prediction_drift",
        metrics={"drift_score": 0.15, "psi": 0.08},
        alert_triggered=False,
        alerts=[],
        timestamp="2026-11-28T00:00:00Z",
        reference_data={"mean": 0.35},
        current_data={"mean": 0.42},
        tags={"deployment": "production"},
    )


def file_per_group(root: Path, n: int, upload_every: int) -> list[float]:
    """The old log: one atomically written file per group, deleted after its upload."""
    out, done = [], []
    for i in range(n):
        r = record(i)
        t = time.perf_counter()
        path = root / f"{time.time_ns():020d}-{i:08d}.jsonl"
        write_atomic(path, [r.model_dump_json().encode() + b"\n"])
        out.append(time.perf_counter() - t)
        done.append(path)
        if len(done) == upload_every:  # the uploader deletes the files of a round (off the acknowledgement path)
            for p in done:
                p.unlink()
            done.clear()
    return out


def segments(root: Path, n: int, upload_every: int) -> list[float]:
    """The log now: appends to a segment; a drained segment is deleted and the next append starts another."""
    wal = open_wal(root, "s3://bench/wal")
    assert wal is not None
    out, done = [], []
    try:
        for i in range(n):
            r = record(i)
            t = time.perf_counter()
            wal.append([r])
            out.append(time.perf_counter() - t)
            done.append(r.monitoring_id)
            if len(done) == upload_every:
                wal.uploaded(done)
                done = []
    finally:
        wal.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--upload-every", type=int, default=7, help="records per upload round (about 7 per 0.1 s in the HTTP bench)")
    parser.add_argument("--dir", type=Path, default=None, help="a folder on the log's disk (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="asgard-bench-wal-") as tmp:
        old_root, new_root = Path(tmp, "old"), Path(tmp, "new")
        old_root.mkdir()
        old, new = [], []
        for _ in range(2):  # interleaved halves: both see the same disk state
            old += file_per_group(old_root, args.records // 2, args.upload_every)
            new += segments(new_root, args.records // 2, args.upload_every)
    p = {
        name: (float(np.percentile(v, 50)) * 1000, float(np.percentile(v, 99)) * 1000)
        for name, v in (("file_per_group", old), ("segment", new))
    }
    print(
        json.dumps(
            {
                "records": args.records,
                "upload_every": args.upload_every,
                "file_per_group_ms": {"p50": round(p["file_per_group"][0], 3), "p99": round(p["file_per_group"][1], 3)},
                "segment_ms": {"p50": round(p["segment"][0], 3), "p99": round(p["segment"][1], 3)},
                "p50_ratio_segment_over_file_per_group": round(p["segment"][0] / p["file_per_group"][0], 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
