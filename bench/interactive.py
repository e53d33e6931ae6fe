"""Interactive speed: the seed's small requests over HTTP against the embedded stack vs a plain one-process script.

Usage::

    .venv/bin/python bench/interactive.py                      # private stack (asgard up/down), 20 calls each
    .venv/bin/python bench/interactive.py --repeat 10          # fewer calls of the slow (seconds) requests
    .venv/bin/python bench/interactive.py --api-url http://127.0.0.1:8000 --home .asgard   # reuse a running stack

Without ``--api-url``/``--home`` it starts its own embedded stack with ``asgard up`` in a temporary
``ASGARD_HOME`` and ``HOME`` on free loopback ports, and stops it with ``asgard down`` at the end.
With either flag it reuses the stack that the current environment (plus ``--home`` as ``ASGARD_HOME``)
describes and leaves it running.

(a) The platform, over HTTP on 127.0.0.1, warm (one warm-up call each, not counted):

- ``POST /feast/features``: the seed's step 1 body, once (its time is printed, not a target);
- ``POST /mlops/models``: the seed's step 2 body (5 entities, sklearn), and the same with 2,000 entities;
- ``POST /mlops/serve/batch``: the seed's step 4 body (10 rows), a new output path per call;
- ``POST /mlops/monitoring``: the seed's step 5 body;
- ``GET /mlops/health``, and a no-op Serve application that this bench deploys at ``/bench-noop`` on the
  same Serve proxy (the proxy's floor: a GET, and a POST of the monitoring body that it reads; removed
  at the end).

The seed requests run ``--repeat`` times (default 20); the millisecond routes ``--fast-repeat`` times
(default 200) so that their p99 means something.

(b) The baseline, in this process, on the same data: the demo gold table
(``asgard_ray.local.demo_data.customer_aggregates``, built in memory before timing) and the stack's own
MLflow and S3 servers. One call is ``pandas.merge_asof`` point-in-time join of the entities at "now",
one sklearn fit (the seed's parameters), one MLflow run with params, a metric and the model logged, then
scoring 10 entities (model loaded back from MLflow, as-of join, predict) and their Parquet written to
the S3 server. Its train part (join, fit, MLflow run) and score part are timed separately too.

It prints p50/p99 per call, the ratio platform/baseline and the issue's targets beside them, then
one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asgard_ray.config import Settings  # noqa: E402
from asgard_ray.features.specs import SEED_EXAMPLE  # noqa: E402

FEATURES = [f["name"] for f in SEED_EXAMPLE["features"]]
LABEL = "churned"
SEED_PARAMS = {"n_estimators": 100, "max_depth": 10, "random_state": 42}
NOOP_APP = "bench_noop"
NOOP_PREFIX = "/bench-noop"
MODEL = "bench_interactive_churn"
SKOPS_TRUSTED = ["sklearn.tree._tree.Tree"]
"""What a RandomForest holds that skops does not trust by default (the platform finds these per class)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(seconds: list[float], q: float) -> float:
    """Percentile in milliseconds."""
    return float(np.percentile(np.asarray(seconds) * 1000, q))


def _stats(seconds: list[float]) -> dict[str, float]:
    return {"n": len(seconds), "p50_ms": _pct(seconds, 50), "p99_ms": _pct(seconds, 99)}


# --- the stack -----------------------------------------------------------------------------------------


def stack_environment(root: Path) -> dict[str, str]:
    """A private embedded stack's environment (as tests/conftest.py builds it): free ports, an empty HOME."""
    user_home = root / "user_home"
    user_home.mkdir(parents=True, exist_ok=True)
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("ASGARD_", "MLFLOW_", "S3_", "FEAST_", "AWS_", "RAY_AUTH_TOKEN"))}
    return {
        **inherited,
        "HOME": str(user_home),
        "ASGARD_HOME": str(root / "asgard"),
        "ASGARD_S3_PORT": str(_free_port()),
        "ASGARD_MLFLOW_PORT": str(_free_port()),
        "ASGARD_RAY_PORT": str(_free_port()),
        "ASGARD_DASHBOARD_PORT": str(_free_port()),
        "ASGARD_API_PORT": str(_free_port()),
        "RAY_AUTH_MODE": "token",
    }


def asgard(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run the ``asgard`` CLI with ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "asgard_ray.cli", *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _wait(url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(url)


def deploy_noop(settings: Settings, api: str) -> None:
    """Deploy a Serve application that answers ``ok`` at ``/bench-noop`` on the stack's proxy."""
    from ray import serve

    from asgard_ray.runtime import connect

    connect(settings)

    @serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=100)
    class NoOp:
        async def __call__(self, request: Any) -> str:
            if request.method == "POST":  # a POST's body is fetched from the proxy, as any route with a body does
                await request.body()
            return "ok"

    serve.run(NoOp.bind(), name=NOOP_APP, route_prefix=NOOP_PREFIX, blocking=False)  # type: ignore[attr-defined]
    _wait(f"{api}{NOOP_PREFIX}", timeout=120)


def delete_noop() -> None:
    """Remove the no-op application (a reused stack keeps running)."""
    from ray import serve

    serve.delete(NOOP_APP)


# --- (a) the platform over HTTP ------------------------------------------------------------------------


def timed(call: Callable[[int], httpx.Response], n: int, warmup: int = 1) -> tuple[list[float], httpx.Response]:
    """``warmup`` uncounted calls, then ``n`` timed ones; every answer must be 2xx."""
    resp = None
    for i in range(warmup):
        resp = call(-1 - i)
        if resp.status_code >= 400:
            raise RuntimeError(f"{resp.request.method} {resp.request.url} -> {resp.status_code}: {resp.text[:2000]}")
    out = []
    for i in range(n):
        t = time.perf_counter()
        resp = call(i)
        out.append(time.perf_counter() - t)
        if resp.status_code >= 400:
            raise RuntimeError(f"{resp.request.method} {resp.request.url} -> {resp.status_code}: {resp.text[:2000]}")
    assert resp is not None
    return out, resp


def train_body(model_name: str, n_entities: int) -> dict[str, Any]:
    """The seed's step 2 body with ``n_entities`` customers."""
    return {
        "experiment_name": "customer_churn",
        "model_name": model_name,
        "framework": "sklearn",
        "model_type": "classification",
        "data_source": {
            "feature_views": [SEED_EXAMPLE["name"]],
            "entities": {"customer_id": list(range(1, n_entities + 1))},
            "target_column": LABEL,
        },
        "hyperparameters": {"params": dict(SEED_PARAMS)},
    }


def _about(resp: httpx.Response) -> str:
    """What a training answer says about how it ran (path, trials, warnings), briefly."""
    data = resp.json()
    info = {k: data[k] for k in data if k in ("execution", "path", "execution_path", "fast_path")}
    info.update({k: data[k] for k in ("num_trials", "warnings") if k in data})
    return json.dumps(info, default=str)[:400]


def bench_platform(api: str, settings: Settings, repeat: int, fast_repeat: int, tag: str) -> dict[str, Any]:
    """Time the seed's requests and the control routes; return the figures."""
    res: dict[str, Any] = {}
    with httpx.Client(base_url=api, timeout=900) as http:
        t = time.perf_counter()
        r = http.post("/feast/features", json=SEED_EXAMPLE)
        res["register_features_s"] = time.perf_counter() - t
        if r.status_code >= 400 and r.status_code != 409:
            raise RuntimeError(f"POST /feast/features -> {r.status_code}: {r.text[:2000]}")
        print(f"POST /feast/features (once): {res['register_features_s']:.2f} s, HTTP {r.status_code}", flush=True)

        for label, model, n_ent in (("train_5", MODEL, 5), ("train_2000", f"{MODEL}_2k", 2000)):
            body = train_body(model, n_ent)

            def train(i: int, body: dict[str, Any] = body) -> httpx.Response:
                return http.post("/mlops/models", json=body)

            times, last = timed(train, repeat)
            res[label] = _stats(times)
            res[label + "_about"] = _about(last)
            if label == "train_5":
                run_id = last.json()["run_id"]
            print(f"POST /mlops/models {n_ent} entities: p50 {res[label]['p50_ms']:.0f} ms  {res[label + '_about']}", flush=True)

        reg = http.post("/mlops/registry", json={"model_name": MODEL, "run_id": run_id, "description": "bench/interactive.py"})
        if reg.status_code >= 400:
            raise RuntimeError(f"POST /mlops/registry -> {reg.status_code}: {reg.text[:2000]}")
        version = str(reg.json()["version"])

        def batch(i: int) -> httpx.Response:
            return http.post(
                "/mlops/serve/batch",
                json={
                    "model_name": MODEL,
                    "model_version": version,
                    "feature_views": [SEED_EXAMPLE["name"]],
                    "entities_df": {"customer_id": list(range(1, 11))},
                    "output_path": f"s3://my-bucket/predictions/bench_interactive/{tag}/call_{i + 1}.parquet",
                },
            )

        times, last = timed(batch, repeat)
        res["batch_10"] = _stats(times)
        res["batch_10_path"] = last.json().get("execution_path")
        print(
            f"POST /mlops/serve/batch 10 rows: p50 {res['batch_10']['p50_ms']:.0f} ms  status {last.json().get('status')}"
            f"  execution_path {res['batch_10_path']}",
            flush=True,
        )

        monitoring = {
            "model_name": MODEL,
            "model_version": version,
            "metric_type": "prediction_drift",
            "metrics": {"drift_score": 0.15, "psi": 0.08, "js_divergence": 0.12},
            "reference_data": {"mean": 0.35, "std": 0.12},
            "current_data": {"mean": 0.42, "std": 0.15},
            "tags": {"deployment": "production"},
        }
        times, _ = timed(lambda i: http.post("/mlops/monitoring", json=monitoring), fast_repeat, warmup=10)
        res["monitoring"] = _stats(times)
        times, _ = timed(lambda i: http.get("/mlops/health"), fast_repeat, warmup=10)
        res["health"] = _stats(times)
        try:
            deploy_noop(settings, api)
            times, _ = timed(lambda i: http.get(NOOP_PREFIX), fast_repeat, warmup=10)
            res["noop"] = _stats(times)
            times, _ = timed(lambda i: http.post(NOOP_PREFIX, json=monitoring), fast_repeat, warmup=10)
            res["noop_post"] = _stats(times)
        except Exception as exc:  # noqa: BLE001 - the floor is a reference, not a target; say why it is missing
            res["noop_error"] = f"{type(exc).__name__}: {exc}"[:300]
            print(f"no-op Serve endpoint unavailable: {res['noop_error']}", flush=True)
    return res


# --- (b) the plain one-process script ------------------------------------------------------------------


class Baseline:
    """The seed's work in one process: merge_asof, one fit, one MLflow run, predict, Parquet on S3."""

    def __init__(self, settings: Settings, tag: str) -> None:
        import mlflow
        import pyarrow.fs as pafs

        from asgard_ray.local.demo_data import customer_aggregates

        os.environ.update(settings.worker_env())
        os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
        dists = ("mlflow", "pandas", "numpy", "scikit-learn", "skops")
        self.requirements = [f"{d}=={importlib.metadata.version(d)}" for d in dists]  # inferring them costs seconds a run
        self.gold = customer_aggregates().sort_values("event_timestamp", kind="stable").reset_index(drop=True)
        mlflow.set_tracking_uri(settings.tracking_uri)
        self.experiment_id = mlflow.set_experiment("bench_interactive_baseline").experiment_id
        endpoint = settings.s3_endpoint or ""
        self.fs = pafs.S3FileSystem(
            access_key=settings.aws_access_key_id,
            secret_key=settings.aws_secret_access_key,
            region=settings.aws_region,
            endpoint_override=endpoint.split("://", 1)[-1] or None,
            scheme=endpoint.split("://", 1)[0] if "://" in endpoint else "https",
        )
        self.out = f"my-bucket/predictions/bench_interactive/{tag}/baseline"

    def frame(self, ids: list[int]) -> pd.DataFrame:
        """Point-in-time join of the entities at now (the platform's default entity timestamp)."""
        entities = pd.DataFrame({"customer_id": np.asarray(ids, dtype=np.int64)})
        entities["event_timestamp"] = pd.Timestamp.now(tz="UTC").as_unit("us")
        joined = pd.merge_asof(entities, self.gold, on="event_timestamp", by="customer_id", direction="backward")
        return joined.dropna(subset=[LABEL])

    def run(self, n_entities: int, i: int) -> dict[str, float]:
        """One call: train part, score part and total, in seconds."""
        import mlflow
        import pyarrow as pa
        import pyarrow.parquet as pq
        from mlflow.models import infer_signature
        from sklearn.ensemble import RandomForestClassifier

        t0 = time.perf_counter()
        df = self.frame(list(range(1, n_entities + 1)))
        X, y = df[FEATURES].astype("float64"), df[LABEL].astype("int64")  # noqa: N806
        model = RandomForestClassifier(**SEED_PARAMS).fit(X, y)
        with mlflow.start_run(experiment_id=self.experiment_id) as run:
            mlflow.log_params(SEED_PARAMS)
            mlflow.log_metric("train_accuracy", float((model.predict(X) == y).mean()))
            mlflow.sklearn.log_model(  # skops, as MLflow 3 saves sklearn; pinned requirements and an example, as the platform logs it
                model,
                name="model",
                signature=infer_signature(X, model.predict(X)),
                input_example=X.head(5),
                pip_requirements=self.requirements,
                skops_trusted_types=SKOPS_TRUSTED,
            )
        t1 = time.perf_counter()
        loaded = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
        rows = self.frame(list(range(1, 11)))
        rows = rows[["customer_id", "event_timestamp", *FEATURES]].copy()
        rows["prediction"] = loaded.predict(rows[FEATURES].astype("float64"))
        pq.write_table(pa.Table.from_pandas(rows, preserve_index=False), f"{self.out}/{n_entities}_{i}.parquet", filesystem=self.fs)
        t2 = time.perf_counter()
        return {"train": t1 - t0, "score": t2 - t1, "total": t2 - t0}


def bench_baseline(settings: Settings, repeat: int, tag: str) -> dict[str, Any]:
    """Time the baseline for 5 and 2,000 entities (one warm-up call each)."""
    base = Baseline(settings, tag)
    res: dict[str, Any] = {}
    for n_ent in (5, 2000):
        with contextlib.redirect_stdout(io.StringIO()):  # MLflow prints two "View run" lines per run
            base.run(n_ent, -1)
            runs = [base.run(n_ent, i) for i in range(repeat)]
        for part in ("train", "score", "total"):
            res[f"base_{n_ent}_{part}"] = _stats([r[part] for r in runs])
        print(f"baseline {n_ent} entities: total p50 {res[f'base_{n_ent}_total']['p50_ms']:.0f} ms", flush=True)
    return res


# --- report --------------------------------------------------------------------------------------------


def report(res: dict[str, Any]) -> None:
    """Print the table: platform p50/p99, baseline p50, ratio, target."""

    def row(call: str, key: str, base: str | None, target: str, ok: bool | None) -> None:
        s = res[key]
        b = res[base]["p50_ms"] if base else None
        ratio = f"{s['p50_ms'] / b:.2f}x" if b else "-"
        verdict = "-" if ok is None else ("met" if ok else "NOT met")
        print(
            f"{call:44} {s['n']:>4} {s['p50_ms']:>10.1f} {s['p99_ms']:>10.1f} {b if b is not None else float('nan'):>10.1f} "
            f"{ratio:>8}  {target:34} {verdict}"
        )

    print()
    print(f"{'call':44} {'n':>4} {'p50 ms':>10} {'p99 ms':>10} {'base p50':>10} {'ratio':>8}  {'target':34} verdict")
    for n_ent in (5, 2000):
        key, base = f"train_{n_ent}", f"base_{n_ent}_total"
        p50 = res[key]["p50_ms"]
        ok = p50 <= 1.5 * res[base]["p50_ms"] and p50 <= 3000
        row(f"POST /mlops/models, {n_ent} entities, sklearn", key, base, "p50 <= 1.5x baseline and <= 3 s", ok)
    row("POST /mlops/serve/batch, 10 rows", "batch_10", "base_5_score", "p50 <= 1 s", res["batch_10"]["p50_ms"] <= 1000)
    mon = res["monitoring"]
    mon_ok = mon["p50_ms"] <= 10 and mon["p99_ms"] <= 50
    if "noop_post" in res:
        row("POST /bench-noop (reads its body: POST floor)", "noop_post", None, "", None)
        above = mon["p50_ms"] - res["noop_post"]["p50_ms"]
        row("POST /mlops/monitoring", "monitoring", "noop_post", f"p50 <= 10, p99 <= 50 ms ({above:+.1f} floor)", mon_ok)
        row("POST /mlops/monitoring, over the POST floor", "monitoring", "noop_post", f"p50 <= floor + 3 ms ({above:+.2f})", above <= 3)
    else:
        row("POST /mlops/monitoring", "monitoring", None, "p50 <= 10 ms, p99 <= 50 ms", mon_ok)
    if "noop" in res:
        row("GET /bench-noop (no-op Serve app: the floor)", "noop", None, "", None)
        above = res["health"]["p50_ms"] - res["noop"]["p50_ms"]
        row("GET /mlops/health", "health", "noop", f"p50 within 1 ms of no-op ({above:+.2f})", above <= 1)
    else:
        row("GET /mlops/health", "health", None, "within 1 ms of no-op (no floor)", None)
    print()
    print("baseline parts, p50 ms (train = merge_asof + fit + MLflow run with the model; score = load + join + predict + Parquet):")
    for n_ent in (5, 2000):
        parts = {p: res[f"base_{n_ent}_{p}"]["p50_ms"] for p in ("train", "score", "total")}
        ratio = res[f"train_{n_ent}"]["p50_ms"] / parts["train"]
        print(
            f"  {n_ent:>5} entities: "
            + "  ".join(f"{p} {v:.0f}" for p, v in parts.items())
            + f"  (train request / train part: {ratio:.2f}x)"
        )
    print(f"register feature view (once, first call): {res['register_features_s'] * 1000:.0f} ms")
    print(
        "ratio = platform p50 / baseline p50 (train: the whole baseline script; batch: its score part;"
        " monitoring: the no-op app's POST, which reads the same body; health: its GET)"
    )


def main() -> None:
    """Start or reuse the stack, run both sides, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20, help="timed calls of each seed request and of the baseline")
    parser.add_argument("--fast-repeat", type=int, default=200, help="timed calls of the millisecond routes")
    parser.add_argument("--api-url", help="reuse the stack whose API answers here (its settings from the environment)")
    parser.add_argument("--home", help="reuse the stack with this ASGARD_HOME (ports from the environment)")
    args = parser.parse_args()

    reuse = bool(args.api_url or args.home)
    tmp = None
    env: dict[str, str] | None = None
    if reuse:
        if args.home:
            os.environ["ASGARD_HOME"] = str(Path(args.home).absolute())
    else:
        tmp = tempfile.TemporaryDirectory(prefix="asgard-bench-interactive-", ignore_cleanup_errors=True)
        env = stack_environment(Path(tmp.name))
        os.environ.clear()
        os.environ.update(env)
    load_before = os.getloadavg()
    tag = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    res: dict[str, Any] = {"load_before": load_before, "cpus": os.cpu_count()}
    try:
        if env is not None:
            t = time.perf_counter()
            up = asgard(env, "up")
            if up.returncode != 0:
                raise RuntimeError(f"asgard up failed ({up.returncode}):\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}")
            res["stack_up_s"] = time.perf_counter() - t
            print(f"asgard up: {res['stack_up_s']:.1f} s (private home {env['ASGARD_HOME']})", flush=True)
        settings = Settings(_env_file=None)  # type: ignore[call-arg]  # the environment only, as the stack reads it
        api = (args.api_url or settings.api_url).rstrip("/")
        _wait(f"{api}/mlops/health")
        res.update(bench_baseline(settings, args.repeat, tag))  # first: it fails fast, and warms nothing the platform uses
        res.update(bench_platform(api, settings, args.repeat, args.fast_repeat, tag))
    finally:
        try:
            import ray

            if ray.is_initialized():
                if reuse:
                    delete_noop()
                ray.shutdown()  # leave the cluster before `asgard down` stops it
        except Exception as exc:  # noqa: BLE001 - cleanup of a reference app must not hide the figures
            print(f"could not remove {NOOP_APP}: {exc}", flush=True)
        if env is not None:
            down = asgard(env, "down", timeout=300)
            print(f"asgard down: rc {down.returncode}", flush=True)
        if tmp is not None:
            tmp.cleanup()
    res["load_after"] = os.getloadavg()
    report(res)
    print(f"load average before {load_before}, after {res['load_after']}, {res['cpus']} CPUs")
    print(json.dumps(res, default=str))


if __name__ == "__main__":
    main()
