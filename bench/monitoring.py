"""Monitoring benchmark: POST latency (actor client and API), history over 10k records, drift vs Evidently.

Run: ``.venv/bin/python bench/monitoring.py`` (add ``--quick`` for a smoke run). It starts its own S3
server (moto, loopback) and a local Ray (2 CPUs); MLflow is not started, so the MLflow mirror is off
(it runs off the acknowledgement path anyway). Evidently comes from the optional ``bench`` extra
(``pip install evidently``); without it the drift comparison is skipped. Prints one JSON summary.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asgard_ray.config import Settings  # noqa: E402
from asgard_ray.monitoring.actor import MonitoringClient  # noqa: E402
from asgard_ray.monitoring.aggregate import AggregateSpec  # noqa: E402
from asgard_ray.monitoring.compute import aggregate_files, column_spec, drift_metrics  # noqa: E402
from asgard_ray.monitoring.profile import numeric_profile  # noqa: E402
from asgard_ray.monitoring.schemas import HistoryRequest, MonitoringRecord, MonitoringRequest, format_ts  # noqa: E402
from asgard_ray.monitoring.store import RecordStore  # noqa: E402
from asgard_ray.storage import ensure_buckets  # noqa: E402

log = logging.getLogger("bench.monitoring")


def pct(values: list[float], q: float) -> float:
    """Percentile in milliseconds (values in seconds)."""
    return float(np.percentile(np.asarray(values) * 1000, q))


def timed(fn: Any, n: int) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t)
    return out


def body(model: str, i: int) -> MonitoringRequest:
    return MonitoringRequest(
        model_name=model,
        model_version="1",
        metric_type="prediction_drift",
        metrics={"drift_score": 0.15, "psi": (i % 20) / 100, "ks_pvalue": 0.3},
    )


def bench_posts(settings: Settings, n: int) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from asgard_ray.api.app import create_app

    tag = uuid.uuid4().hex[:6]
    client = MonitoringClient(settings, name=f"bench-monitoring-{tag}", prefix=f"bench-{tag}", mirror=False)
    for i in range(10):
        client.log(body("warmup", i))
    store = RecordStore(settings, f"bench-raw-{tag}")
    rec = MonitoringRecord(
        monitoring_id="x",
        model_name="m",
        model_version="1",
        metric_type="custom",
        metrics={"a": 1.0},
        alert_triggered=False,
        alerts=[],
        timestamp=format_ts(datetime.now(UTC)),
    )
    put = timed(lambda i: store.write_group("m", "2026-01-01", [rec]), n)
    import ray

    ping = timed(lambda i: ray.get(client.handle.ping.remote()), n)
    seq = timed(lambda i: client.log(body("bench_model", i)), n)
    acknowledged_by = client.stats()["acknowledged_by"]
    with ThreadPoolExecutor(16) as pool:
        t = time.perf_counter()
        conc = list(pool.map(lambda i: timed(lambda _: client.log(body("bench_conc", i)), 1)[0], range(n * 2)))
        wall = time.perf_counter() - t
    # the same actor acknowledging after the S3 PUT (ASGARD_MONITORING_ACK=s3, the production default): the baseline
    s3_ack = MonitoringClient(
        settings.model_copy(update={"asgard_monitoring_ack": "s3"}),
        name=f"bench-monitoring-s3-{tag}",
        prefix=f"bench-s3-{tag}",
        mirror=False,
    )
    for i in range(10):
        s3_ack.log(body("warmup", i))
    seq_s3 = timed(lambda i: s3_ack.log(body("bench_model", i)), n)
    ray.kill(s3_ack.handle, no_restart=True)
    app = create_app(settings)
    app.state.services["monitoring"] = client
    with TestClient(app, base_url="http://127.0.0.1") as http:  # keyless: the API answers only to a loopback Host
        payload = body("bench_api", 0).model_dump(exclude_none=True)
        api = timed(lambda i: http.post("/mlops/monitoring", json=payload).raise_for_status(), n)
    ray.kill(client.handle, no_restart=True)
    return {
        "s3_put_p50_ms": pct(put, 50),
        "s3_put_p99_ms": pct(put, 99),
        "actor_roundtrip_p50_ms": pct(ping, 50),
        "acknowledged_by": acknowledged_by,
        "actor_post_p50_ms": pct(seq, 50),
        "actor_post_p99_ms": pct(seq, 99),
        "actor_post_s3_ack_p50_ms": pct(seq_s3, 50),
        "actor_post_s3_ack_p99_ms": pct(seq_s3, 99),
        "wal_vs_s3_ack_p50_ratio": round(pct(seq, 50) / pct(seq_s3, 50), 2),
        "actor_post_16_threads_p50_ms": pct(conc, 50),
        "actor_post_16_threads_p99_ms": pct(conc, 99),
        "actor_post_16_threads_per_s": round(len(conc) / wall, 1),
        "api_post_p50_ms": pct(api, 50),
        "api_post_p99_ms": pct(api, 99),
        "posts": n,
    }


def bench_history(settings: Settings, n_records: int, reps: int) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    prefix = f"bench-hist-{tag}"
    store = RecordStore(settings, prefix)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    groups: dict[tuple[str, str], list[MonitoringRecord]] = {}
    for i in range(n_records):
        ts = start + timedelta(minutes=10 * i)
        rec = MonitoringRecord(
            monitoring_id=f"mon-h{i}",
            model_name="churn_predictor",
            model_version=str(1 + i % 3),
            metric_type=["prediction_drift", "feature_drift", "data_quality"][i % 3],
            metrics={"psi": (i % 30) / 100, "ks_pvalue": 0.2},
            alert_triggered=i % 30 > 10,
            alerts=["psi drift detected"] if i % 30 > 10 else [],
            timestamp=format_ts(ts),
        )
        groups.setdefault((rec.model_name, rec.timestamp[:10]), []).append(rec)
    written = store.write_groups(groups)  # each group's object path, or its error
    assert not any(isinstance(v, Exception) for v in written.values()), written
    client = MonitoringClient(settings, name=f"bench-history-{tag}", prefix=prefix, mirror=False)
    t = time.perf_counter()
    assert client.stats()["records"] == n_records
    rebuild = time.perf_counter() - t
    mid = format_ts(start + timedelta(days=20))
    end = format_ts(start + timedelta(days=50))
    queries = {
        "all_limit_100": HistoryRequest(model_name="churn_predictor", limit=100),
        "version_type_range": HistoryRequest(
            model_name="churn_predictor", model_version="2", metric_type="feature_drift", start_date=mid, end_date=end, limit=100
        ),
        "last_page": HistoryRequest(model_name="churn_predictor", limit=100, offset=n_records - 100),
    }
    out: dict[str, Any] = {"records": n_records, "objects": len(groups), "actor_rebuild_s": round(rebuild, 2)}
    for name, q in queries.items():
        client.history(q)
        lat = timed(lambda i, q=q: client.history(q), reps)
        out[f"{name}_p50_ms"] = pct(lat, 50)
        out[f"{name}_p99_ms"] = pct(lat, 99)
    import ray

    ray.kill(client.handle, no_restart=True)
    return out


def make_drift_data(folder: Path, rows: int, ref_rows: int, n_features: int, files: int) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    rng = np.random.default_rng(0)
    cols = [f"f{i:02d}" for i in range(n_features)]
    ref = pd.DataFrame({c: rng.normal(0, 1 + i % 3, ref_rows) for i, c in enumerate(cols)})
    cur = pd.DataFrame({c: rng.normal(0.3 if i % 2 else 0.0, 1 + i % 3, rows) for i, c in enumerate(cols)})
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = []
    for i, part in enumerate(np.array_split(cur, files)):
        path = folder / f"part-{i}.parquet"
        pq.write_table(pa.Table.from_pandas(part.reset_index(drop=True), preserve_index=False), path)
        paths.append(str(path))
    return ref, cur, paths


def platform_drift(settings: Settings, ref: pd.DataFrame, paths: list[str]) -> tuple[float, dict[str, Any]]:
    t = time.perf_counter()
    profiles = {c: numeric_profile(ref[c]) for c in ref.columns}  # what training logs once; timed anyway
    spec = AggregateSpec(columns=tuple(column_spec(c, p) for c, p in profiles.items()), sample_size=20_000)
    total = aggregate_files(settings, paths, list(ref.columns), spec)
    metrics = {c: drift_metrics(profiles[c], total["columns"][c], total["sample"][c]) for c in ref.columns}
    return time.perf_counter() - t, metrics


def evidently_drift(ref: pd.DataFrame, cur: pd.DataFrame) -> tuple[float, Any]:
    from evidently import Report
    from evidently.presets import DataDriftPreset

    t = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
    result = snapshot.dict()
    return time.perf_counter() - t, result


def bench_drift(settings: Settings, rows: int, ref_rows: int, n_features: int, evidently: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        ref, cur, paths = make_drift_data(Path(tmp), rows, ref_rows, n_features, files=8)
        out: dict[str, Any] = {
            "rows": rows,
            "features": n_features,
            "reference_rows": ref_rows,
            "data_generation_s": round(time.perf_counter() - t, 1),
        }
        cold, metrics = platform_drift(settings, ref, paths)
        warm, metrics = platform_drift(settings, ref, paths)
        out.update(
            platform_cold_s=round(cold, 2),
            platform_warm_s=round(warm, 2),
            drifted_features_by_ks=sum(m["ks_pvalue"] < 0.05 for m in metrics.values()),
            drifted_features_by_psi=sum(m["psi"] > 0.1 for m in metrics.values()),
        )
        if evidently:
            try:
                ev, _ = evidently_drift(ref, cur)
                out.update(
                    evidently_s=round(ev, 2), speedup_vs_evidently_warm=round(ev / warm, 1), speedup_vs_evidently_cold=round(ev / cold, 1)
                )
            except ImportError:
                out["evidently"] = "not installed: pip install evidently (the bench extra)"
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print a JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--skip-drift", action="store_true")
    parser.add_argument("--skip-evidently", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import ray
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    home = Path(tempfile.mkdtemp(prefix="asgard-bench-"))
    settings = Settings(
        asgard_home=home, s3_endpoint_url=f"http://127.0.0.1:{port}", asgard_s3_port=port, mlflow_tracking_uri="http://127.0.0.1:9"
    )
    ensure_buckets(settings, [settings.s3_bucket])
    from asgard_ray.runtime import prepare_auth

    prepare_auth(settings, create=True)  # a token of its own under the bench's home, never ~/.ray
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        namespace=settings.ray_namespace,
        log_to_driver=False,
        runtime_env={"env_vars": settings.worker_env()},
    )
    results: dict[str, Any] = {"machine": {"cpus_for_ray": 2}}
    try:
        results["post"] = bench_posts(settings, 60 if args.quick else 300)
        results["history"] = bench_history(settings, 1000 if args.quick else 10_000, 20 if args.quick else 100)
        if not args.skip_drift:
            results["drift"] = bench_drift(
                settings, 50_000 if args.quick else 1_000_000, 10_000 if args.quick else 100_000, 20, evidently=not args.skip_evidently
            )
    finally:
        ray.shutdown()
        server.stop()
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
