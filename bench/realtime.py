"""Real-time prediction latency and throughput against the running stack, beside two baselines.

Needs the embedded stack (``asgard up``). In one run it measures, for one-row predictions with
inline features and with an online-store lookup of one id:

- the prediction app through Serve's proxy (``POST /predict/<model>``);
- the same handler (``PredictionServer``, same model, same online store) under plain uvicorn;
- a no-op Serve endpoint on the same proxy (the proxy's floor);
- the control route ``POST /mlops/serve`` (one more hop through a ``DeploymentHandle``).

Each target gets a warm-up, ``--requests`` sequential requests (p50, p99) and a concurrent run of
``--clients`` clients (throughput, p50, p99), bounded in count and time. ``--prepare`` registers the
seed's feature view, trains and registers a small LightGBM model and materializes the view first.

    .venv/bin/asgard up && .venv/bin/python bench/realtime.py --prepare
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

import httpx

from asgard_ray.config import Settings

NOOP_APP = "asgard-bench-noop"
UVICORN_APP = """
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route
from asgard_ray.config import Settings
from asgard_ray.runtime import connect
from asgard_ray.api.predict import PredictionServer
settings = Settings()
connect(settings)
server = PredictionServer(settings)
async def predict(request):
    return await server(request)
app = Starlette(routes=[Route("/predict/{{name}}", predict, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port={port}, log_level="warning")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _sequential(http: httpx.Client, path: str, body: dict[str, Any], n: int) -> dict[str, float]:
    for _ in range(20):  # warm-up: loads, connections
        http.post(path, json=body).raise_for_status()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        http.post(path, json=body).raise_for_status()
        times.append((time.perf_counter() - t0) * 1000)
    return {"p50": statistics.median(times), "p99": _pct(times, 0.99)}


async def _concurrent(base: str, path: str, body: dict[str, Any], clients: int, per_client: int, limit_s: float) -> dict[str, float]:
    times: list[float] = []
    errors = 0
    deadline = time.monotonic() + limit_s

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors
        for _ in range(per_client):
            if time.monotonic() > deadline:
                return
            t0 = time.perf_counter()
            resp = await http.post(path, json=body)
            times.append((time.perf_counter() - t0) * 1000)
            errors += resp.status_code != 200

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - start
    return {"rps": len(times) / wall, "p50": statistics.median(times), "p99": _pct(times, 0.99), "errors": errors}


def _deploy_noop(settings: Settings) -> None:
    from ray import serve

    from asgard_ray.runtime import connect

    connect(settings)

    @serve.deployment(name="Noop", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=64)
    class Noop:
        async def __call__(self, request: Any) -> Any:
            from starlette.responses import Response

            await request.body()
            return Response(b'{"ok":true}', media_type="application/json")

    serve.run(Noop.bind(), name=NOOP_APP, route_prefix="/bench-noop", blocking=False)


def _prepare(api: httpx.Client, model: str) -> None:
    from asgard_ray.features.specs import SEED_EXAMPLE

    api.post("/feast/features", json=SEED_EXAMPLE).raise_for_status()
    trained = api.post(
        "/mlops/models",
        json={
            "experiment_name": "bench_realtime",
            "model_name": model,
            "framework": "lightgbm",
            "model_type": "classification",
            "data_source": {
                "feature_views": ["customer_features"],
                "entities": {"customer_id": list(range(1, 801))},
                "target_column": "churned",
            },
            "hyperparameters": {"params": {"n_estimators": 50}, "num_trials": 1},
        },
        timeout=1800,
    )
    trained.raise_for_status()
    version = api.post("/mlops/registry", json={"model_name": model, "run_id": trained.json()["run_id"]}).json()["version"]
    api.put(f"/mlops/registry/{model}/aliases/champion", json={"version": str(version)}).raise_for_status()
    api.post("/feast/materialize", json={"feature_views": ["customer_features"]}, timeout=1800).raise_for_status()


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print a table with ratios and differences against the floor."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="bench_realtime")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--per-client", type=int, default=20)
    parser.add_argument("--limit-s", type=float, default=60.0, help="time bound of each concurrent run")
    parser.add_argument("--prepare", action="store_true", help="register the view, train, register and materialize first")
    args = parser.parse_args(argv)

    settings = Settings()
    api_base = settings.api_url
    api = httpx.Client(base_url=api_base, timeout=120)
    if args.prepare:
        _prepare(api, args.model)
    row = api.post("/mlops/serve", json={"model_name": args.model, "entities": {"customer_id": [1]}})
    row.raise_for_status()
    features = row.json()["predictions"][0]["features"]
    inline = {"model_version": "champion", "instances": [features]}
    lookup = {"model_version": "champion", "entities": {"customer_id": [1]}}

    _deploy_noop(settings)
    port = _free_port()
    env = {**os.environ, **settings.to_env()}
    child = subprocess.Popen([sys.executable, "-c", UVICORN_APP.format(port=port)], env=env)
    plain = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.post(f"{plain}/predict/{args.model}", json=inline, timeout=30).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        targets = [
            ("serve no-op (floor)", api_base, "/bench-noop", {"x": 1}),
            ("serve /predict inline", api_base, f"/predict/{args.model}", inline),
            ("serve /predict 1-id lookup", api_base, f"/predict/{args.model}", lookup),
            ("uvicorn inline (same handler)", plain, f"/predict/{args.model}", inline),
            ("uvicorn 1-id lookup", plain, f"/predict/{args.model}", lookup),
            ("control /mlops/serve inline", api_base, "/mlops/serve", {"model_name": args.model, **inline}),
        ]
        results: dict[str, dict[str, float]] = {}
        for name, base, path, body in targets:
            with httpx.Client(base_url=base, timeout=60) as http:
                seq = _sequential(http, path, body, args.requests)
            conc = asyncio.run(_concurrent(base, path, body, args.clients, args.per_client, args.limit_s))
            results[name] = {**{f"seq_{k}": v for k, v in seq.items()}, **{f"conc_{k}": v for k, v in conc.items()}}
    finally:
        child.terminate()
        child.wait(timeout=30)
        from ray import serve

        serve.delete(NOOP_APP)

    floor = results["serve no-op (floor)"]
    print(f"\n{args.requests} sequential one-row requests, then {args.clients} concurrent clients x {args.per_client}")
    print(f"{'target':32} {'p50 ms':>8} {'p99 ms':>8} {'d p50':>7} {'x p50':>6} | {'rps':>7} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
    for name, r in results.items():
        print(
            f"{name:32} {r['seq_p50']:8.2f} {r['seq_p99']:8.2f} {r['seq_p50'] - floor['seq_p50']:+7.2f} "
            f"{r['seq_p50'] / floor['seq_p50']:6.2f} | {r['conc_rps']:7.1f} {r['conc_p50']:8.1f} {r['conc_p99']:8.1f} "
            f"{int(r['conc_errors']):6d}"
        )
    inline_r, lookup_r = results["serve /predict inline"], results["serve /predict 1-id lookup"]
    print("\ntargets (issue 13, 2-core machine):")
    print(
        f"  inline p50 within 2 ms of the floor: {inline_r['seq_p50'] - floor['seq_p50']:+.2f} ms; "
        f"p99 <= 30 ms: {inline_r['seq_p99']:.2f} ms"
    )
    print(f"  1-id lookup p50 within 3 ms of the floor: {lookup_r['seq_p50'] - floor['seq_p50']:+.2f} ms")
    print(f"  32 clients >= 100 req/s: {inline_r['conc_rps']:.1f} req/s inline, {lookup_r['conc_rps']:.1f} req/s lookup")


if __name__ == "__main__":
    main(sys.argv[1:])
