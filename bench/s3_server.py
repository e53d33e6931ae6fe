"""Benchmark the embedded S3 server: write-through to disk (now) vs the in-memory server with a 5 s sync (before).

Usage::

    .venv/bin/python bench/s3_server.py                  # 4 x 64 MiB objects, 200 x 1 KiB PUTs, 10 s idle, 2 rounds
    .venv/bin/python bench/s3_server.py --rounds 1 --large 2

Both servers run as child processes (``python -m ...  --port P --data-dir D``) on free loopback ports,
each with a fresh data dir under the system temp folder. "before" is ``asgard_ray/local/s3server.py`` as
of commit ``BASELINE_REV`` (read with ``git show`` into a temporary file); "now" is the working tree's
module. Rounds alternate before/now so that load from other processes hits both alike; each figure is
the median over rounds. Measured, per server:

- large PUT and GET MB/s: ``--large`` objects of ``--large-mib`` MiB, one ``put_object`` / ``get_object``
  each (boto3, one request per object);
- small PUT p50 and p90: ``--small`` PUTs of 1 KiB, one after the other;
- idle CPU: the server's CPU time over ``--idle`` seconds with no requests (psutil), after a settle time
  of 6 s so that the old server's first sync after the writes has finished;
- restart (now only): SIGTERM, start again on the same folder, seconds until the port opens, which
  is when every object is loaded (the old server opened its port before its restore, so it has no
  comparable figure).

Targets (issue 11): large throughput within 20 % of before, small-PUT p50 at most 2 ms above before,
idle CPU near 0.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
import psutil

BASELINE_REV = "e637fa0"  # the last commit with the in-memory server and its 5 s sync
ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"port {port} did not open")


def _client(port: int) -> Any:
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}),
    )


def measure(cmd: list[str], args: argparse.Namespace, payload: bytes, restore_check: bool) -> dict[str, float]:
    """Start one server, run the workload against it, stop it; return its figures."""
    data_dir = Path(tempfile.mkdtemp(prefix="bench-s3-"))
    port = _free_port()
    proc = subprocess.Popen(
        [*cmd, "--port", str(port), "--data-dir", str(data_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT
    )
    try:
        _wait_port(port, proc)
        s3 = _client(port)
        s3.create_bucket(Bucket="bench")
        size_mb = len(payload) / 1e6

        t = time.perf_counter()
        for i in range(args.large):
            s3.put_object(Bucket="bench", Key=f"large/{i}", Body=payload)
        put_mbs = args.large * size_mb / (time.perf_counter() - t)

        t = time.perf_counter()
        for i in range(args.large):
            got = s3.get_object(Bucket="bench", Key=f"large/{i}")["Body"].read()
            assert len(got) == len(payload)
        get_mbs = args.large * size_mb / (time.perf_counter() - t)

        small = os.urandom(1024)
        lat = []
        for i in range(args.small):
            t = time.perf_counter()
            s3.put_object(Bucket="bench", Key=f"small/{i:05d}", Body=small)
            lat.append(time.perf_counter() - t)
        lat.sort()

        time.sleep(6)  # settle: let the old server's first sync after the writes finish
        ps = psutil.Process(proc.pid)
        before = ps.cpu_times()
        time.sleep(args.idle)
        after = ps.cpu_times()
        idle_cpu = 100 * ((after.user - before.user) + (after.system - before.system)) / args.idle
        restart_s = float("nan")
        if restore_check:  # restart on the same folder: the port opens once every object is loaded
            proc.terminate()
            proc.wait(timeout=30)
            t = time.perf_counter()
            proc = subprocess.Popen(
                [*cmd, "--port", str(port), "--data-dir", str(data_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT
            )
            _wait_port(port, proc)
            restart_s = time.perf_counter() - t
            listed = s3.list_objects_v2(Bucket="bench", MaxKeys=1000)["KeyCount"]
            assert listed == args.large + args.small, listed
        return {
            "large PUT MB/s": put_mbs,
            "large GET MB/s": get_mbs,
            "small PUT p50 ms": 1e3 * lat[len(lat) // 2],
            "small PUT p90 ms": 1e3 * lat[int(len(lat) * 0.9)],
            "idle CPU %": idle_cpu,
            "restart s": restart_s,
        }
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    """Run the rounds and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--large", type=int, default=4, help="large objects per round")
    parser.add_argument("--large-mib", type=int, default=64)
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measurement")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="bench-s3-old-"))
    old_src = subprocess.run(
        ["git", "show", f"{BASELINE_REV}:asgard_ray/local/s3server.py"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    (tmp / "old_s3server.py").write_bytes(old_src)
    servers = {
        "before": [sys.executable, str(tmp / "old_s3server.py")],
        "now": [sys.executable, "-m", "asgard_ray.local.s3server"],
    }
    payload = os.urandom(args.large_mib << 20)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
    started = time.monotonic()
    try:
        for r in range(args.rounds):
            for name, cmd in servers.items():
                results[name].append(measure(cmd, args, payload, restore_check=name == "now"))
                print(f"round {r + 1} {name}: " + ", ".join(f"{k} {v:.2f}" for k, v in results[name][-1].items()), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"\n{args.large} x {args.large_mib} MiB, {args.small} x 1 KiB PUTs, {args.idle:.0f} s idle, "
        f"median of {args.rounds} rounds, {time.monotonic() - started:.0f} s in all; before = {BASELINE_REV}"
    )
    print(f"{'figure':<20}{'before':>10}{'now':>10}{'now/before':>12}{'now-before':>12}")
    for figure in results["before"][0]:
        old = statistics.median(m[figure] for m in results["before"])
        new = statistics.median(m[figure] for m in results["now"])
        if figure == "restart s":
            print(f"{'restart s':<20}{'-':>10}{new:>10.2f}   (now: SIGTERM, start again, port open = all objects loaded)")
            continue
        ratio = f"{new / old:.2f}" if old else "-"
        print(f"{figure:<20}{old:>10.2f}{new:>10.2f}{ratio:>12}{new - old:>12.2f}")


if __name__ == "__main__":
    main()
