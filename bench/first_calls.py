"""First calls on a fresh stack: each seed step's first request against its own warm p50.

Usage::

    .venv/bin/python bench/first_calls.py               # fresh private stack, 10 warm calls per step
    .venv/bin/python bench/first_calls.py --warm 5 --json

It starts a fresh embedded stack (``benchkit.PrivateStack``: ``asgard up`` in a temporary
``ASGARD_HOME``/``HOME`` on free loopback ports), and as soon as ``asgard up`` returns it sends the
seed guide's five requests in order, timing each (the *first* call):

1. ``POST /feast/features``: the seed's ``customer_features`` body;
2. ``POST /mlops/models``: the seed's training body (sklearn, 5 entities);
3. ``POST /mlops/registry``: the run of step 2;
4. ``POST /mlops/serve/batch``: the seed's 10 rows into the seed's output path;
5. ``POST /mlops/monitoring``: the seed's record.

Then it repeats each step ``--warm`` times (default 10) for its *warm* p50, with fresh names or
paths where the seed's would only confirm what exists: a new feature-view name per call (a real
registration each time), the same training body (a new run each time), each new run registered
as a new version, a new output path per batch. The target (issue 25, B14): first call <= 2x the
warm p50 of the same step. It prints, per step, first, warm p50 and p99, the ratio and
``met``/``NOT met``, plus how long ``asgard up`` took; ``--json`` prints one JSON document instead.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchkit import PrivateStack, verdict  # noqa: E402

from asgard_ray.features.specs import SEED_EXAMPLE  # noqa: E402

TARGET_RATIO = 2.0
TRAIN = {
    "experiment_name": "customer_churn",
    "model_name": "churn_predictor",
    "framework": "sklearn",
    "model_type": "classification",
    "data_source": {
        "feature_views": ["customer_features"],
        "entities": {"customer_id": [1, 2, 3, 4, 5]},
        "target_column": "churned",
    },
    "hyperparameters": {"params": {"n_estimators": 100, "max_depth": 10, "random_state": 42}},
}
BATCH = {
    "model_name": "churn_predictor",
    "feature_views": ["customer_features"],
    "entities_df": {"customer_id": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]},
    "output_path": "s3://my-bucket/predictions/batch_2025_10_17.parquet",
}
MONITORING = {
    "model_name": "churn_predictor",
    "model_version": "1",
    "metric_type": "prediction_drift",
    "metrics": {"drift_score": 0.15, "psi": 0.08, "js_divergence": 0.12},
    "reference_data": {"mean": 0.35, "std": 0.12},
    "current_data": {"mean": 0.42, "std": 0.15},
    "tags": {"deployment": "production"},
}
STEPS = ("register features", "train", "register model", "batch score", "monitor")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _timed(call: Callable[[], httpx.Response]) -> tuple[float, httpx.Response]:
    """Milliseconds of one call; the answer must be 2xx."""
    start = time.perf_counter()
    resp = call()
    ms = (time.perf_counter() - start) * 1000
    if resp.status_code >= 300:
        raise RuntimeError(f"{resp.request.method} {resp.request.url} -> {resp.status_code}: {resp.text[:2000]}")
    return ms, resp


def run(api: str, warm: int) -> dict[str, Any]:
    """The seed's steps once in order (first calls), then each ``warm`` times; figures per step."""
    first: dict[str, float] = {}
    warm_ms: dict[str, list[float]] = {s: [] for s in STEPS}
    with httpx.Client(base_url=api, timeout=900) as http:
        first["register features"], _ = _timed(lambda: http.post("/feast/features", json=SEED_EXAMPLE))
        first["train"], trained = _timed(lambda: http.post("/mlops/models", json=TRAIN))
        run_id = trained.json()["run_id"]
        register = {"model_name": "churn_predictor", "run_id": run_id, "description": "Churn prediction model v1"}
        first["register model"], registered = _timed(lambda: http.post("/mlops/registry", json=register))
        version = str(registered.json()["version"])
        first["batch score"], _ = _timed(lambda: http.post("/mlops/serve/batch", json={**BATCH, "model_version": version}))
        first["monitor"], _ = _timed(lambda: http.post("/mlops/monitoring", json={**MONITORING, "model_version": version}))
        _log("first calls: " + ", ".join(f"{s} {first[s]:.0f} ms" for s in STEPS))

        for i in range(warm):
            body = {**SEED_EXAMPLE, "name": f"customer_features_w{i}"}
            warm_ms["register features"].append(_timed(lambda b=body: http.post("/feast/features", json=b))[0])
        runs = []
        for _ in range(warm):
            ms, resp = _timed(lambda: http.post("/mlops/models", json=TRAIN))
            warm_ms["train"].append(ms)
            runs.append(resp.json()["run_id"])
        for rid in runs:
            body = {"model_name": "churn_predictor", "run_id": rid, "description": "bench/first_calls.py"}
            warm_ms["register model"].append(_timed(lambda b=body: http.post("/mlops/registry", json=b))[0])
        for i in range(warm):
            body = {**BATCH, "model_version": version, "output_path": f"s3://my-bucket/predictions/first_calls/warm_{i}.parquet"}
            warm_ms["batch score"].append(_timed(lambda b=body: http.post("/mlops/serve/batch", json=b))[0])
        for _ in range(warm):
            warm_ms["monitor"].append(_timed(lambda: http.post("/mlops/monitoring", json={**MONITORING, "model_version": version}))[0])
    steps = {}
    for step in STEPS:
        times = sorted(warm_ms[step])
        p50 = statistics.median(times)
        ratio = first[step] / p50
        steps[step] = {
            "first_ms": round(first[step], 1),
            "warm_p50_ms": round(p50, 1),
            "warm_p99_ms": round(times[min(len(times) - 1, int(0.99 * len(times)))], 1),
            "ratio": round(ratio, 2),
            "met": ratio <= TARGET_RATIO,
        }
    return steps


def main(argv: list[str] | None = None) -> None:
    """Start a fresh private stack, time the seed's first calls and warm calls, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", type=int, default=10, help="warm calls per step (their p50 is the baseline)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    with PrivateStack() as stack:
        _log(f"asgard up: {stack.up_s:.1f} s ({stack.api})")
        steps = run(stack.api, args.warm)
    result = {
        "asgard_up_s": round(stack.up_s, 1),
        "warm_calls": args.warm,
        "target": f"first call <= {TARGET_RATIO:g}x warm p50",
        "steps": steps,
        "all_met": all(s["met"] for s in steps.values()),
        "cpus": os.cpu_count(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"\nfresh stack: asgard up {stack.up_s:.1f} s; then the seed's steps in order, then {args.warm} warm calls each")
    print(f"{'step':20} {'first ms':>10} {'warm p50':>10} {'warm p99':>10} {'ratio':>7}  target (<= {TARGET_RATIO:g}x)")
    for step, s in steps.items():
        print(f"{step:20} {s['first_ms']:10.0f} {s['warm_p50_ms']:10.0f} {s['warm_p99_ms']:10.0f} {s['ratio']:6.2f}x  {verdict(s['met'])}")
    print(f"load average before {result['load_before']}, after {result['load_after']}, {result['cpus']} CPUs")


if __name__ == "__main__":
    main(sys.argv[1:])
