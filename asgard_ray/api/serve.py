"""The Ray Serve ingress: the FastAPI app in a Serve deployment.

``build_app`` is the import path for ``serve run`` / ``serve deploy`` (``cluster/serve_config.yaml``).
The replica asks for no CPU of its own, so it never starves the training and scoring work it
submits; long work runs as Ray tasks and jobs, never in the replica's event loop.
"""

from __future__ import annotations

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
            # the monitoring actor starts (rebuild from S3, MLflow import) with the API, not on its first write
            client = fastapi_app.state.services.setdefault("monitoring", MonitoringClient(settings))
            threading.Thread(target=_warm_monitoring, args=(client,), name="warm-monitoring", daemon=True).start()

    return AsgardIngress.bind()  # type: ignore[attr-defined]  # added by @serve.deployment


def _warm_monitoring(client: MonitoringClient) -> None:
    try:
        client.stats(timeout_s=300)
    except Exception as exc:  # the first monitoring call tries again, and reports what is wrong
        log.warning("the monitoring actor did not start with the API: %s", exc)
    freeze_startup_heap("API replica")
