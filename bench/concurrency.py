"""Benchmark B13: many small batch-scoring jobs at once queue instead of being refused.

On a private embedded stack (``asgard up`` on free ports), with the seed's feature view and a small
model registered over HTTP, it sends ``--jobs`` 10-row ``POST /mlops/serve/batch`` requests (each to
its own output path):

1. one after another (the baseline, measured in the same run);
2. all at once, from as many client threads; the wall time must be <= 1.5x the baseline and no
   request may be refused;
3. ``--burst`` at once (default 200): each completes, or gets 429 only past the queue bound, and no job
   is left ``queued`` or ``running`` afterwards.

Every request's status is counted, with a met / NOT met verdict per target.

    .venv/bin/python bench/concurrency.py --jobs 45 --burst 200 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchkit import PrivateStack, seed_model, verdict  # noqa: E402


def _body(model: str, version: str, out: str) -> dict[str, Any]:
    return {
        "model_name": model,
        "model_version": version,
        "feature_views": ["customer_features"],
        "entities_df": {"customer_id": list(range(1, 11))},
        "output_path": out,
    }


def _send(api: str, bodies: list[dict[str, Any]], clients: int) -> tuple[float, list[Any]]:
    import httpx

    def one(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with httpx.Client(base_url=api, timeout=900) as http:
            r = http.post("/mlops/serve/batch", json=body)
            return r.status_code, r.json()

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(one, bodies))
    return time.perf_counter() - start, answers


def _leftovers(api: str, job_ids: list[str]) -> list[str]:
    """Jobs still queued or running (after their requests all answered)."""
    import httpx

    with httpx.Client(base_url=api, timeout=60) as http:
        states = {j: http.get(f"/mlops/jobs/{j}").json().get("status") for j in job_ids}
    return [j for j, s in states.items() if s in ("queued", "pending", "running")]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark on a private stack and print the figures and verdicts."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=45)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    with PrivateStack() as stack:
        api = stack.api
        version = seed_model(api)
        warm = [_body("bench_churn", version, f"s3://asgard/bench/concurrency/warm-{i}") for i in range(4)]
        _send(api, warm, 4)  # first requests after asgard up: not measured
        seq_bodies = [_body("bench_churn", version, f"s3://asgard/bench/concurrency/seq-{i}") for i in range(args.jobs)]
        par_bodies = [_body("bench_churn", version, f"s3://asgard/bench/concurrency/par-{i}") for i in range(args.jobs)]
        burst_bodies = [_body("bench_churn", version, f"s3://asgard/bench/concurrency/burst-{i}") for i in range(args.burst)]
        seq_s, _ = _send(api, seq_bodies, 1)
        par_s, par = _send(api, par_bodies, args.jobs)
        burst_s, burst = _send(api, burst_bodies, args.burst)
        refused = sum(1 for code, _ in par if code == 429)
        done = sum(1 for code, body in par if code == 200 and body.get("status") == "completed")
        burst_codes: dict[int, int] = {}
        for code, _ in burst:
            burst_codes[code] = burst_codes.get(code, 0) + 1
        job_ids = [b["job_id"] for code, b in [*par, *burst] if "job_id" in b]
        left = _leftovers(api, job_ids)
    ratio = par_s / seq_s
    res = {
        "jobs": args.jobs,
        "sequential_s": round(seq_s, 2),
        "concurrent_s": round(par_s, 2),
        "ratio": round(ratio, 2),
        "concurrent_completed": done,
        "concurrent_refused": refused,
        "burst": args.burst,
        "burst_s": round(burst_s, 2),
        "burst_statuses": burst_codes,
        "left_queued_or_running": len(left),
    }
    b13 = ratio <= 1.5 and refused == 0 and done == args.jobs
    burst_ok = set(burst_codes) <= {200, 429} and not left
    lines = [
        f"{args.jobs} 10-row batches one after another: {seq_s:.1f} s; all at once: {par_s:.1f} s; ratio {ratio:.2f} (target <= 1.5); "
        f"{done} completed, {refused} refused: B13 {verdict(b13)}",
        f"{args.burst} at once: {burst_s:.1f} s, statuses {burst_codes} (429 only past the queue bound), "
        f"{len(left)} left queued or running: {verdict(burst_ok)}",
    ]
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps({**res, "summary": lines}, indent=2))
    return res


if __name__ == "__main__":
    main()
