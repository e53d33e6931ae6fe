"""Ray Serve direct ingress (``RAY_SERVE_ENABLE_DIRECT_INGRESS=1``): the control API on its replica's own port.

Usage::

    .venv/bin/python bench/direct_ingress.py            # 300 calls per route and address

Starts a private embedded stack (``asgard up`` in a temporary ``ASGARD_HOME``/``HOME``, free loopback ports)
with direct ingress on: Serve still runs its proxy on ``ASGARD_API_PORT``, and each ingress replica also
serves HTTP itself on a port from ``RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT``..``MAX`` (a free range
chosen here). It measures, in the same run, sequentially, after a warm-up:

- ``GET /mlops/health`` and ``POST /mlops/monitoring`` (the seed's step 5 body) through the proxy;
- the same on the control API replica's own port (found by probing the range);
- the same app under plain uvicorn (``create_app(Settings())`` joined to the same cluster): the floor.

It prints p50/p99 and the ratios, then stops the stack with ``asgard down``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from interactive import _free_port, _wait, asgard, stack_environment  # noqa: E402

BODY = {
    "model_name": "bench_direct_ingress",
    "model_version": "1",
    "metric_type": "prediction_drift",
    "metrics": {"drift_score": 0.15, "psi": 0.08, "js_divergence": 0.12},
    "reference_data": {"mean": 0.35, "std": 0.12},
    "current_data": {"mean": 0.42, "std": 0.15},
    "tags": {"deployment": "production"},
}
UVICORN = (
    "import uvicorn\nfrom asgard_ray.api.app import create_app\nfrom asgard_ray.config import Settings\n"
    "from asgard_ray.runtime import connect\ns = Settings(); connect(s)\n"
    "uvicorn.run(create_app(s), host='127.0.0.1', port={port}, log_level='warning')\n"
)


def measure(base: str, n: int) -> dict[str, dict[str, float]]:
    """p50/p99 (ms) of health and the monitoring POST at ``base``; every answer must be 2xx."""
    out = {}
    with httpx.Client(base_url=base, timeout=30) as http:
        for name, call in (
            ("health", lambda: http.get("/mlops/health")),
            ("monitoring", lambda: http.post("/mlops/monitoring", json=BODY)),
        ):
            for _ in range(20):
                call().raise_for_status()
            times = []
            for _ in range(n):
                start = time.perf_counter()
                call().raise_for_status()
                times.append((time.perf_counter() - start) * 1000)
            out[name] = {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))}
    return out


def replica_port(low: int, high: int) -> int:
    """The port in ``[low, high)`` where the control API's replica answers ``/mlops/health``."""
    for port in range(low, high):
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/mlops/health", timeout=1)
            if r.status_code == 200 and r.json().get("status") == "healthy":
                return port
        except (httpx.HTTPError, ValueError):
            continue
    raise RuntimeError(f"no replica answers /mlops/health on 127.0.0.1:{low}-{high - 1}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="asgard-bench-di-") as tmp:
        env = stack_environment(Path(tmp))
        low = _free_port()
        low, high = min(low, 60000), min(low, 60000) + 16
        env.update(
            RAY_SERVE_ENABLE_DIRECT_INGRESS="1",
            RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT=str(low),
            RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT=str(high),
        )
        up = asgard(env, "up")
        if up.returncode != 0:
            raise SystemExit(f"asgard up failed:\n{up.stdout}\n{up.stderr}")
        uvicorn = None
        try:
            proxy = f"http://127.0.0.1:{env['ASGARD_API_PORT']}"
            _wait(f"{proxy}/mlops/health")
            direct = f"http://127.0.0.1:{replica_port(low, high)}"
            uv_port = _free_port()
            uvicorn = subprocess.Popen([sys.executable, "-c", UVICORN.format(port=uv_port)], env={**env}, stderr=subprocess.DEVNULL)
            plain = f"http://127.0.0.1:{uv_port}"
            _wait(f"{plain}/mlops/health")
            res = {
                "proxy": measure(proxy, args.requests),
                "direct": measure(direct, args.requests),
                "uvicorn": measure(plain, args.requests),
            }
        finally:
            if uvicorn is not None:
                uvicorn.terminate()
                uvicorn.wait(timeout=30)
            asgard(env, "down")
    print(f"{'route':<26}{'proxy p50/p99':>18}{'direct p50/p99':>18}{'uvicorn p50/p99':>18}{'direct/uvicorn':>16}")
    for route in ("health", "monitoring"):
        cells = [f"{res[k][route]['p50_ms']:.2f}/{res[k][route]['p99_ms']:.1f}" for k in ("proxy", "direct", "uvicorn")]
        ratio = res["direct"][route]["p50_ms"] / res["uvicorn"][route]["p50_ms"]
        print(f"{route:<26}{cells[0]:>18}{cells[1]:>18}{cells[2]:>18}{ratio:>15.2f}x")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
