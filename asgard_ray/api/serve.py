"""The Ray Serve ingress: the FastAPI app in a Serve deployment.

``build_app`` is the import path for ``serve run`` / ``serve deploy`` (``cluster/serve_config.yaml``).
The replica asks for no CPU of its own, so it never starves the training and scoring work it
submits; long work runs as Ray tasks and jobs, never in the replica's event loop.
"""

from __future__ import annotations

import importlib
import logging
import threading
from typing import Any

from ray import serve
from ray.serve import Application

from asgard_ray.api.app import create_app
from asgard_ray.api.security import check_serve_bind
from asgard_ray.config import Settings
from asgard_ray.heap import freeze_startup_heap
from asgard_ray.monitoring.actor import MonitoringClient

__all__ = ["DEPLOYMENT_NAME", "build_app"]

log = logging.getLogger(__name__)

DEPLOYMENT_NAME = "AsgardAPI"

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
            # the monitoring actor (rebuild from S3, MLflow import) and the job supervisor with its warm
            # workers (imports, rehearsal) start with the API, not under the first write or small job
            client = fastapi_app.state.services.setdefault("monitoring", MonitoringClient(settings))
            threading.Thread(target=_warm_up, args=(client, settings), name="warm-up", daemon=True).start()

    return AsgardIngress.bind()  # type: ignore[attr-defined]  # added by @serve.deployment


def _warm_up(client: MonitoringClient, settings: Settings) -> None:
    from asgard_ray.jobs import run_sync, supervisor_info

    try:
        client.stats(timeout_s=300)
    except Exception as exc:  # the first monitoring call tries again, and reports what is wrong
        log.warning("the monitoring actor did not start with the API: %s", exc)
    try:  # the supervisor starts its warm workers in __init__; they import in their own processes
        run_sync(supervisor_info(settings))
    except Exception as exc:  # the first job tries again, and reports what is wrong
        log.warning("the job supervisor did not start with the API: %s", exc)
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception as exc:  # the route that needs it raises the same error, where it is reported
            log.warning("preloading %s failed: %s", name, exc)
    freeze_startup_heap("API replica")
