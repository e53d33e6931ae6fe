"""Control-plane latency: the API through Ray Serve vs the same FastAPI app under plain uvicorn.

Needs the embedded stack (``asgard up``). Starts the same app (``create_app(Settings())``) under
uvicorn on a free loopback port, joined to the same Ray cluster, then measures p50/p99 of
``GET /mlops/health`` and ``POST /mlops/monitoring`` against both, sequentially, in this run.

    .venv/bin/asgard up && .venv/bin/python bench/control_plane.py --requests 500
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time

import httpx

from asgard_ray.config import Settings

UVICORN_APP = """
import uvicorn
from asgard_ray.api.app import create_app
from asgard_ray.config import Settings
from asgard_ray.runtime import connect
settings = Settings()
connect(settings)
uvicorn.run(create_app(settings), host="127.0.0.1", port={port}, log_level="warning")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise TimeoutError(url)


def measure(base: str, n: int) -> dict[str, tuple[float, float]]:
    """p50/p99 in ms of the two routes, after a warm-up."""
    out = {}
    with httpx.Client(base_url=base, timeout=30) as http:
        for name, call in (
            ("GET /mlops/health", lambda i: http.get("/mlops/health")),
            (
                "POST /mlops/monitoring",
                lambda i: http.post(
                    "/mlops/monitoring",
                    json={
                        "model_name": "bench_control_plane",
                        "model_version": "1",
                        "metric_type": "custom",
                        "metrics": {"value": float(i)},
                    },
                ),
            ),
        ):
            for i in range(20):
                call(i).raise_for_status()
            times = []
            for i in range(n):
                t = time.perf_counter()
                call(i).raise_for_status()
                times.append((time.perf_counter() - t) * 1000)
            q = statistics.quantiles(times, n=100)
            out[name] = (statistics.median(times), q[98])
    return out


def main() -> None:
    """Run the comparison and print the table and ratios."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    settings = Settings()
    _wait(f"{settings.api_url}/mlops/health")
    port = _free_port()
    env = {**os.environ, **settings.to_env(), "RAY_AUTH_MODE": "token"}  # the stack's token path, as `asgard up` gives it
    proc = subprocess.Popen([sys.executable, "-c", UVICORN_APP.format(port=port)], env=env)
    try:
        plain = f"http://127.0.0.1:{port}"
        _wait(f"{plain}/mlops/health")
        serve_res = measure(settings.api_url, args.requests)
        plain_res = measure(plain, args.requests)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    print(f"{'route':28} {'serve p50':>10} {'serve p99':>10} {'uvicorn p50':>12} {'uvicorn p99':>12} {'p50 ratio':>10}")
    for route in serve_res:
        s50, s99 = serve_res[route]
        u50, u99 = plain_res[route]
        print(f"{route:28} {s50:10.2f} {s99:10.2f} {u50:12.2f} {u99:12.2f} {s50 / u50:10.2f}x")


if __name__ == "__main__":
    main()
