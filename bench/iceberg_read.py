"""Benchmark gold-table reads and writes: Ray Data ``read_iceberg`` vs ``read_parquet`` of the same rows.

Usage::

    flock /tmp/asgard-tests.lock .venv/bin/python bench/iceberg_read.py               # 1M rows, 3 rounds
    flock /tmp/asgard-tests.lock .venv/bin/python bench/iceberg_read.py --rows 200000 --rounds 1

Starts moto's ``ThreadedMotoServer`` on a free loopback port (as tests/conftest.py does), an embedded
SQLite catalog under a temporary ``ASGARD_HOME``, and a local Ray (``--cpus``). The demo-shaped table
(customer id, timestamp, 5 numeric features) is written twice:

- as an Iceberg table with ``asgard_ray.gold.write_table`` (one commit; the table's
  ``write.target-file-size-bytes`` from ``ASGARD_GOLD_TARGET_FILE_MB``);
- as a Parquet folder with ``pyarrow.parquet.write_table`` split into the same number of files.

Then each round reads both in full with Ray Data (``GoldTable.to_ray`` -> ``read_iceberg`` pinned to the
snapshot, and ``read_parquet`` of the folder), ``materialize()`` included, and, after one warm-up read of each, the median per reader
(order alternating by round) is printed with the ratio iceberg / parquet. Write figures are one run each.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _frame(rows: int) -> pa.Table:
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "customer_id": np.arange(1, rows + 1, dtype="int64"),
            "event_timestamp": pd.Timestamp("2025-10-01", tz="UTC") - pd.to_timedelta(rng.integers(0, 86400 * 90, rows), unit="s"),
            "total_orders": rng.poisson(8, rows).astype("int64"),
            "avg_order_value": rng.lognormal(3.7, 0.45, rows),
            "days_since_last_order": rng.integers(0, 365, rows).astype("int64"),
            "support_tickets": rng.poisson(1, rows).astype("int64"),
            "tenure_days": rng.integers(30, 2000, rows).astype("int64"),
        }
    )
    df["event_timestamp"] = df["event_timestamp"].astype("datetime64[us, UTC]")
    return pa.Table.from_pandas(df, preserve_index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()

    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    home = Path(tempfile.mkdtemp(prefix="asgard-bench-iceberg-"))
    from asgard_ray.runtime import ensure_token

    # the bench's own Ray token (as tests/conftest.py), before Ray is imported: never ~/.ray
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(ensure_token(home / "ray" / "auth_token"))
    os.environ.pop("RAY_AUTH_TOKEN", None)
    try:
        import pyarrow.parquet as pq
        import ray

        from asgard_ray.config import Settings
        from asgard_ray.gold import resolve_table, write_table
        from asgard_ray.storage import ensure_buckets, list_files, resolve

        settings = Settings(asgard_home=home, s3_endpoint_url=f"http://127.0.0.1:{port}", asgard_s3_port=port)
        os.environ.update(settings.worker_env())
        ensure_buckets(settings, [settings.s3_bucket])
        data = _frame(args.rows)
        mib = data.nbytes / 2**20

        t = time.perf_counter()
        snap = write_table(settings, "bench_gold", data)
        write_iceberg_s = time.perf_counter() - t
        table = resolve_table(settings, "bench_gold", snapshot_id=snap, format="iceberg")
        ice_files = sum(1 for f in list_files(settings, settings.s3_uri("warehouse")) if f.endswith(".parquet"))
        parts = max(ice_files, 1)

        folder = settings.s3_uri("bench_parquet", "bench_gold")
        fs, base = resolve(settings, folder)
        t = time.perf_counter()
        step = -(-data.num_rows // parts)
        for i in range(parts):
            pq.write_table(data.slice(i * step, step), f"{base}/part-{i:05}.parquet", filesystem=fs)
        write_parquet_s = time.perf_counter() - t

        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": settings.worker_env()})
        paths = [f for f in list_files(settings, folder) if f.endswith(".parquet")]
        timings: dict[str, list[float]] = {"iceberg": [], "parquet": []}
        readers = {
            "iceberg": lambda: table.to_ray(settings).materialize().count(),
            "parquet": lambda: ray.data.read_parquet(paths, filesystem=fs).materialize().count(),
        }
        for read in readers.values():  # warm-up: worker start-up and imports are not the reader's cost
            assert read() == args.rows
        for r in range(args.rounds):
            for name in sorted(readers, reverse=bool(r % 2)):  # alternate the order
                t = time.perf_counter()
                n = readers[name]()
                timings[name].append(time.perf_counter() - t)
                assert n == args.rows, (name, n)
        ice, par = statistics.median(timings["iceberg"]), statistics.median(timings["parquet"])
        print(f"rows {args.rows:,} ({mib:.0f} MiB in memory), data files: iceberg {ice_files}, parquet {len(paths)}; cpus {args.cpus}")
        print(
            f"write  gold.write_table (iceberg, 1 commit): {write_iceberg_s:6.2f} s   pyarrow parquet: {write_parquet_s:6.2f} s   "
            f"ratio {write_iceberg_s / write_parquet_s:.2f}"
        )
        print(
            f"read   read_iceberg (pinned snapshot): {ice:6.2f} s   read_parquet: {par:6.2f} s   ratio {ice / par:.2f}  "
            f"(median of {args.rounds}; all: iceberg {[round(x, 2) for x in timings['iceberg']]}, "
            f"parquet {[round(x, 2) for x in timings['parquet']]})"
        )
        ray.shutdown()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
