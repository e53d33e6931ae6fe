"""The Ray Serve ingress: the FastAPI app in a Serve deployment.

``build_app`` is the import path for ``serve run`` / ``serve deploy`` (``cluster/serve_config.yaml``).
The replica asks for no CPU of its own, so it never starves the training and scoring work it
submits; long work runs as Ray tasks and jobs, never in the replica's event loop.
"""

from __future__ import annotations

import functools
import importlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ray import serve
from ray.serve import Application

from asgard_ray.api.app import create_app
from asgard_ray.api.routes.health import WARM
from asgard_ray.api.security import check_serve_bind
from asgard_ray.config import Settings
from asgard_ray.heap import freeze_startup_heap
from asgard_ray.monitoring.actor import MonitoringClient

__all__ = ["DEPLOYMENT_NAME", "PRELOAD", "build_app", "start_warm_up"]

log = logging.getLogger(__name__)

DEPLOYMENT_NAME = "AsgardAPI"
_WARM_TIMEOUT_S = 300.0

PRELOAD = (
    "feast",
    "mlflow.tracking.request_header.registry",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "skops.io",
    "mlflow.sklearn",
    "pyiceberg.catalog.sql",
    "asgard_ray.features.retrieval",
    "asgard_ray.training.pipeline",
    "asgard_ray.training.modes",
    "asgard_ray.scoring.model",
    "asgard_ray.scoring.plan",
    "asgard_ray.registry.service",
)
"""What the routes import on their first call, imported by the replica when it starts instead.

A fresh stack's first seed requests paid them (``py-spy`` on the replica): Feast on the first training
request's feature-view lookup (3 s), the sklearn estimator classes its validation resolves (0.7 s), the
Iceberg SQL catalog, and skops with MLflow's sklearn flavor on the first batch request's model load
(2 s). XGBoost and LightGBM stay lazy: the first request that names them imports them.
"""


def build_app(args: dict[str, Any] | None = None) -> Application:
    """Build the Serve application (``args`` may override ``num_replicas``)."""
    args = args or {}
    settings = Settings()
    # `serve run`/`serve deploy` bind too: no key, loopback only. Under `serve deploy` this runs in the
    # controller's build task, so the proxies' real http_options are checked, not only the environment.
    check_serve_bind(settings)
    fastapi_app = create_app(settings)

    @serve.deployment(
        name=DEPLOYMENT_NAME,
        num_replicas=int(args.get("num_replicas", 1)),
        ray_actor_options={"num_cpus": 0},
        health_check_period_s=10,
        health_check_timeout_s=30,
        # Routes are async and long work runs as jobs, so a replica holds many cheap waits at once: a low
        # cap (Serve's default is 5) would queue /mlops/health behind waiting requests.
        max_ongoing_requests=1000,
        max_queued_requests=2000,
    )
    @serve.ingress(fastapi_app)
    class AsgardIngress:
        """One replica of the control API."""

        def __init__(self) -> None:
            logging.basicConfig(level=logging.INFO)
            # The replica always runs under the controller: the last word on where its proxies listen
            # (`serve run module:build_app` builds the app before it has even connected to Ray).
            check_serve_bind(settings)
            log.info("Asgard API replica up (mode %s)", settings.asgard_mode.value)
            # what the first seed requests would start (the Feast registry writer, the monitoring actor, the job
            # supervisor with its warm workers, imports, clients) starts with the API, not under those requests;
            # /mlops/health says `warm: false` until that is done, and `asgard up` waits for it
            start_warm_up(settings)

    return AsgardIngress.bind()  # type: ignore[attr-defined]  # added by @serve.deployment


def start_warm_up(settings: Settings) -> None:
    """Mark this process not warm and warm it up on a thread (``_warm_up``).

    A module-level function on purpose: the replica class is defined inside ``build_app``, so Serve ships
    it by value, globals included; this function (and the ``WARM`` it clears) is imported, the routes' own.
    """
    WARM.clear()
    threading.Thread(target=_warm_up, args=(settings,), name="warm-up", daemon=True).start()


def _step(what: str, call: Callable[[], Any]) -> Any:
    """Run one warm-up step; a failure is logged (the first request that needs it reports it), never raised."""
    start = time.perf_counter()
    try:
        result = call()
    except Exception as exc:
        log.warning("warm-up: %s failed after %.1fs: %s", what, time.perf_counter() - start, exc)
        return None
    log.info("warm-up: %s in %.1fs", what, time.perf_counter() - start)
    return result


def _warm_catalog(settings: Settings) -> None:
    """Load the gold catalog and one of its tables in this process (the first training request pins a table)."""
    from asgard_ray.gold import catalog_status, resolve_table

    tables = catalog_status(settings).get("tables") or []
    if tables:
        resolve_table(settings, tables[0].rsplit(".", 1)[-1])


def _warm_mlflow(settings: Settings, rounds: int = 6) -> str:
    """Make the MLflow server's workers build what their first tracking, registry and artifact calls would.

    Each worker of ``mlflow server`` creates its tracking store, registry store and artifact repository (an S3
    client) on its first such request: 1.5 s more on a fresh stack's first training request (``py-spy`` on a
    warm worker: its run's artifact uploads and logged model). Each round opens a new connection, so the
    rounds spread over the workers; the probe object is deleted again. Then one call through this process's
    own client (its REST stores, protos and HTTP session).
    """
    import urllib.request
    import uuid

    import mlflow

    base = settings.tracking_uri.rstrip("/")
    probe = f"{base}/api/2.0/mlflow-artifacts/artifacts/_asgard/warm-up/{uuid.uuid4().hex}"
    calls = [
        ("PUT", probe, b"warm-up"),
        ("GET", probe, None),
        ("DELETE", probe, None),
        ("GET", f"{base}/api/2.0/mlflow/experiments/search?max_results=1", None),
        ("GET", f"{base}/api/2.0/mlflow/registered-models/search?max_results=1", None),
    ]
    for _ in range(rounds):
        for method, url, data in calls:
            request = urllib.request.Request(url, data=data, method=method, headers={"Connection": "close"})
            with urllib.request.urlopen(request, timeout=60) as resp:  # noqa: S310 - the configured tracking server
                resp.read()
    client = mlflow.MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    client.search_experiments(max_results=1)
    client.search_registered_models(max_results=1)
    return f"{rounds} rounds"


def _wait_warm_workers(settings: Settings, timeout_s: float) -> str:
    """Wait until every warm worker of the job supervisor is ready (or known broken), at most ``timeout_s``."""
    from asgard_ray.jobs import run_sync, supervisor_info

    deadline = time.monotonic() + timeout_s
    while True:
        workers = run_sync(supervisor_info(settings))["warm_workers"]
        pending = [w for w in workers if not (w["ready"] or w["broken"] or w["job_id"])]
        if not pending or time.monotonic() > deadline:
            return f"{len(workers) - len(pending)} of {len(workers)} ready"
        time.sleep(0.5)


def _warm_routes(settings: Settings, timeout_s: float) -> str:
    """Call read-only routes once through this node's proxy, so the served app builds its own services.

    Serve serves a copy of the FastAPI app, so what this thread builds in-process (clients, handles) is
    not what the routes use: ``/mlops/status`` makes the app's monitoring client, Feast registry object
    and job-supervisor calls once, ``/feast/features`` and ``/mlops/monitoring/models`` their routes.
    Retried until the proxy routes to the replica (it does once the constructor has returned).
    """
    import urllib.request

    from asgard_ray.api.security import load_keys

    keys = load_keys(settings)
    key = (keys.read + keys.write + (b"",))[0]
    headers = {"Authorization": f"Bearer {key.decode()}"} if key else {}
    base = f"http://127.0.0.1:{settings.asgard_api_port}"
    deadline = time.monotonic() + timeout_s
    for path in ("/mlops/status", "/feast/features", "/mlops/monitoring/models"):
        while True:
            try:
                with urllib.request.urlopen(urllib.request.Request(base + path, headers=headers), timeout=60):  # noqa: S310 - loopback
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    return "status, features, monitoring"


def _warm_up(settings: Settings) -> None:
    """Start and ping what the seed's first requests would otherwise start, then mark the process warm.

    What a fresh stack's first requests paid (``bench/first_calls.py``, ``py-spy`` on each process): the
    Feast registry writer actor (a new process importing Feast, 4 s) on the first feature registration;
    the monitoring actor and the job supervisor with its warm workers; the routes' imports (``PRELOAD``);
    Feast's store, the gold catalog and MLflow's client; the app's own clients and handles. The writer's
    process starts first, so it imports while this thread does the rest. ``asgard up`` waits for ``WARM``
    (``/mlops/health`` ``warm``).
    """
    from ray import get as ray_get

    from asgard_ray.features.registry import warm_writer
    from asgard_ray.features.store import feature_store
    from asgard_ray.jobs import run_sync, supervisor_info

    start = time.perf_counter()
    writer = _step("registry writer actor started", lambda: warm_writer(settings))
    _step("monitoring actor", lambda: MonitoringClient(settings).stats(timeout_s=_WARM_TIMEOUT_S))
    # the supervisor starts its warm workers in __init__; they import in their own processes
    _step("job supervisor", lambda: run_sync(supervisor_info(settings)))
    for name in PRELOAD:
        _step(f"import {name}", functools.partial(importlib.import_module, name))
    _step("Feast store and registry", lambda: feature_store(settings).list_feature_views())
    _step("gold catalog", lambda: _warm_catalog(settings))
    _step("MLflow server and client", lambda: _warm_mlflow(settings))
    if writer is not None:
        _step("registry writer actor warm", lambda: ray_get(writer, timeout=_WARM_TIMEOUT_S))
    _step("warm workers", lambda: _wait_warm_workers(settings, _WARM_TIMEOUT_S))
    _step("the app's routes", lambda: _warm_routes(settings, 60))
    freeze_startup_heap("API replica")
    WARM.set()
    log.info("API replica warm in %.1fs", time.perf_counter() - start)
