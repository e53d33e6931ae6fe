"""Monitoring at scale: rebuild time and memory of the monitoring state over 1,000,000 stored records.

Run: ``.venv/bin/python bench/monitoring_scale.py`` (``--records 100000`` for a quick run). It starts its
own S3 server (moto, loopback), writes the records straight to S3 as JSON-lines objects in the
monitoring layout (``records/model=<m>/date=<d>/*.jsonl``, 100 days, 2,000 records per object; no
POSTs), then rebuilds ``MonitoringState`` in a fresh child process each time (the process the actor
would be), and prints one JSON summary:

- ``small`` (100,000 records): ``baseline_all_in_memory`` (every record held, as the actor did before the
  cap; it also writes the day summaries), then ``warm`` (the default caps, a restart with summaries);
- ``large`` (1,000,000 records): ``cold`` (the default caps, first start over raw objects: reads every
  object once, then writes the day summaries), then ``warm`` (the steady state);
- ratios: warm rebuild time and the state's own memory (RSS growth over the process before the
  rebuild) at 1,000,000 against 100,000 records (about 1 means bounded), and everything-in-memory
  against capped at 100,000; history query times on each state.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asgard_ray.config import Settings

PREFIX = "bench-scale"
DAYS = 100
MODELS = ("churn_predictor", "fraud_model")


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb() -> float:
    """Resident memory of this process now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def generate(settings: Settings, n: int, per_object: int = 2000) -> float:
    """Write ``n`` records as JSON-lines objects; return seconds."""
    from asgard_ray.storage import write_bytes

    started = time.perf_counter()
    today = datetime.now(UTC).date()
    per_day = max(n // DAYS, 1)
    jobs: list[tuple[str, bytes]] = []
    i = 0
    for d in range(DAYS):
        day = (today - timedelta(days=d + 1)).isoformat()
        for model in MODELS:
            count = per_day // len(MODELS)
            for start in range(0, count, per_object):
                lines = []
                for k in range(start, min(start + per_object, count)):
                    i += 1
                    alert = i % 7 == 0
                    sec = k * 86400 // count
                    lines.append(
                        json.dumps(
                            {
                                "monitoring_id": f"mon-{i:016x}",
                                "model_name": model,
                                "model_version": str(1 + i % 3),
                                "metric_type": "prediction_drift" if i % 2 else "feature_drift",
                                "metrics": {"drift_score": (i % 100) / 400, "psi": (i % 37) / 300},
                                "alert_triggered": alert,
                                "alerts": ["drift_score drift detected: 0.150"] if alert else [],
                                "timestamp": f"{day}T{sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}.{k % 1000000:06d}Z",
                                "reference_data": {"mean": 0.35, "std": 0.12},
                                "tags": {"deployment": "bench"},
                            }
                        )
                    )
                key = settings.s3_uri(PREFIX, "records", f"model={model}", f"date={day}", f"{start:013d}-bench.jsonl")
                jobs.append((key, ("\n".join(lines) + "\n").encode()))
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda kv: write_bytes(settings, kv[0], kv[1]), jobs))
    return time.perf_counter() - started


def _rebuild(settings: Settings, caps: dict[str, Any], maintain: bool, out: Any, prefix: str) -> None:
    from asgard_ray.monitoring.schemas import HistoryRequest
    from asgard_ray.monitoring.state import MonitoringState
    from asgard_ray.storage import exists, list_files

    list_files(settings, settings.s3_uri(prefix, "summaries"))  # S3 clients and thread pools up before measuring
    exists(settings, settings.s3_uri(prefix, "rules", "global.json"))
    before = rss_mb()
    peak = [before]
    done = threading.Event()

    def sample() -> None:  # ru_maxrss would report the parent's size (Linux keeps it across exec)
        while not done.wait(0.05):
            peak[0] = max(peak[0], rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    state = MonitoringState(settings, prefix=prefix, mirror=False, compact=False, **caps)
    done.set()
    sampler.join()
    result: dict[str, Any] = {
        "rebuild_s": round(state.rebuild_s, 2),
        "rss_mb": round(rss_mb(), 1),
        "rss_before_mb": round(before, 1),
        "peak_rss_mb": round(max(peak[0], rss_mb()), 1),
        **{k: state.stats()[k] for k in ("records", "records_in_memory", "memory_bytes")},
    }
    timings = {}
    for name, q in {
        "newest_page": {},
        "deep_page": {"offset": state.count() // 3, "limit": 100},
        "one_old_day": {
            "start_date": (datetime.now(UTC) - timedelta(days=80)).strftime("%Y-%m-%dT06:00:00Z"),
            "end_date": (datetime.now(UTC) - timedelta(days=80)).strftime("%Y-%m-%dT18:00:00Z"),
        },
    }.items():
        t = time.perf_counter()
        page = state.history(HistoryRequest(model_name=MODELS[0], **q))
        timings[name] = {"ms": round((time.perf_counter() - t) * 1000, 1), "total": page.total_records, "page": len(page.records)}
    result["history"] = timings
    if maintain:
        t = time.perf_counter()
        result["maintenance"] = state.maintain()
        result["maintenance_s"] = round(time.perf_counter() - t, 2)
    out.put(result)


def rebuild(settings: Settings, caps: dict[str, Any], maintain: bool = False, prefix: str = PREFIX) -> dict[str, Any]:
    """Rebuild in a fresh process (so its memory is the state's alone); return its figures."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_rebuild, args=(settings, caps, maintain, out, prefix))
    proc.start()
    result = out.get(timeout=1800)
    proc.join(60)
    return result


def scale(settings: Settings, n: int, baseline: bool) -> dict[str, Any]:
    """Generate ``n`` records under their own prefix, then rebuild: (baseline or cold) with maintenance, then warm."""
    global PREFIX
    PREFIX = f"bench-scale-{n}"
    out: dict[str, Any] = {"records": n, "generate_s": round(generate(settings, n), 1)}
    if baseline:
        out["baseline_all_in_memory"] = rebuild(settings, {"memory_records": 10 * n, "memory_mb": 1e6}, maintain=True, prefix=PREFIX)
    else:
        out["cold"] = rebuild(settings, {}, maintain=True, prefix=PREFIX)
    out["warm"] = rebuild(settings, {}, prefix=PREFIX)
    return out


def main(argv: list[str] | None = None) -> None:
    """Generate, rebuild, print the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000, help="the scale the large one is compared with")
    args = parser.parse_args(argv)
    from moto.server import ThreadedMotoServer

    from asgard_ray.storage import ensure_buckets

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        settings = Settings(s3_endpoint_url=f"http://127.0.0.1:{port}", asgard_s3_port=port, asgard_home=Path("/tmp/bench-scale"))
        ensure_buckets(settings, [settings.s3_bucket])
        summary: dict[str, Any] = {
            "days": DAYS,
            "models": len(MODELS),
            "memory_records_cap": settings.asgard_monitoring_memory_records,
            "memory_mb_cap": settings.asgard_monitoring_memory_mb,
        }
        small = summary["small"] = scale(settings, args.small, baseline=True)
        large = summary["large"] = scale(settings, args.records, baseline=False)
        grow = lambda r: r["rss_mb"] - r["rss_before_mb"]  # noqa: E731 - the state's own memory
        summary["ratios"] = {
            "records_large_over_small": round(args.records / args.small, 1),
            "warm_rebuild_s_large_over_small": round(large["warm"]["rebuild_s"] / max(small["warm"]["rebuild_s"], 1e-3), 2),
            "warm_state_rss_large_over_small": round(grow(large["warm"]) / max(grow(small["warm"]), 1e-3), 2),
            "state_rss_all_in_memory_small_over_capped_small": round(
                grow(small["baseline_all_in_memory"]) / max(grow(small["warm"]), 1e-3), 2
            ),
        }
        print(json.dumps(summary, indent=2))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
