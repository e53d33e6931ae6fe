"""The prediction app: a Ray Serve deployment of its own, beside (never inside) the control API.

``build_predict_app`` is the import path for ``serve run`` / ``serve deploy`` and what
``asgard_ray.api.deploy`` runs as the application ``asgard-predict`` at ``/predict``. Its replicas
are separate actors from the control ingress, so a slow model never blocks the control API and a
restart of the control API never interrupts predictions.

Two ways in:

- HTTP ``POST /predict/<model_name>`` straight to this deployment (lowest latency): a plain
  ``__call__`` over Starlette's request, no FastAPI routing, the same API keys and Host rule as
  the control API (``api.security``);
- ``DeploymentHandle`` calls to ``predict`` from the control API's ``POST /mlops/serve``.

Each replica runs one background loop: it reads the aliases it serves every
``ASGARD_SERVE_ALIAS_POLL_S`` and swaps to a moved alias's new version once it is loaded, refreshes
Feast's registry, and sends sampled predictions to the monitoring actor.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from typing import Any

from ray import serve
from ray.serve import Application

from asgard_ray.config import Settings
from asgard_ray.errors import AsgardError, InvalidRequest
from asgard_ray.serving.predictor import Predictor
from asgard_ray.serving.sampler import Sampler, ServedStats
from asgard_ray.serving.schemas import PredictRequest, PredictResponse

__all__ = [
    "DEPLOYMENT_NAME",
    "PREDICT_APP",
    "PREDICT_PREFIX",
    "ROUTE_CONTROL",
    "ROUTE_HTTP",
    "PredictionServer",
    "build_predict_app",
    "deployment_options",
    "predict_app",
]

log = logging.getLogger(__name__)

PREDICT_APP = "asgard-predict"
"""Name of the Serve application that serves predictions."""
PREDICT_PREFIX = "/predict"
"""Its route prefix: ``POST /predict/<model_name>``."""
DEPLOYMENT_NAME = "AsgardPredict"
ROUTE_HTTP = "/predict/{model}"
"""The ``route`` label of predictions asked straight of this app over HTTP."""
ROUTE_CONTROL = "/mlops/serve"
"""The ``route`` label of predictions forwarded by the control API (``DeploymentHandle``)."""
_REGISTRY_REFRESH_S = 15.0


def deployment_options(settings: Settings) -> dict[str, Any]:
    """Serve options of the prediction deployment, from settings (also what ``serve_config.yaml`` sets)."""
    return {
        "name": DEPLOYMENT_NAME,
        "autoscaling_config": {
            "min_replicas": settings.asgard_serve_min_replicas,
            "initial_replicas": max(1, settings.asgard_serve_min_replicas),
            "max_replicas": max(settings.asgard_serve_max_replicas, settings.asgard_serve_min_replicas, 1),
            "target_ongoing_requests": settings.asgard_serve_target_ongoing_requests,
        },
        "max_ongoing_requests": settings.asgard_serve_max_ongoing_requests,
        "max_queued_requests": settings.asgard_serve_max_queued_requests,
        "ray_actor_options": {"num_cpus": settings.asgard_serve_num_cpus},
        "health_check_period_s": 10,
        "health_check_timeout_s": 30,
        "graceful_shutdown_timeout_s": 20,
    }


def _json(status: int, body: str, headers: dict[str, str] | None = None) -> Any:
    from starlette.responses import Response

    return Response(content=body, status_code=status, media_type="application/json", headers=headers)


def _error(status: int, message: str, detail: Any = None, headers: dict[str, str] | None = None) -> Any:
    return _json(status, json.dumps({"error": message, "detail": detail}, default=str), headers)


class PredictionServer:
    """One prediction replica (wrapped by ``serve.deployment`` in ``build_predict_app``)."""

    def __init__(self, settings: Settings) -> None:
        from asgard_ray.api.security import load_keys

        logging.basicConfig(level=logging.INFO)
        self.settings = settings
        self.keys = load_keys(settings)
        self.predictor = Predictor(settings)
        self.stats = ServedStats()
        self.sampler = Sampler(settings)
        self._loop_task: asyncio.Task[None] | None = None
        log.info(
            "prediction replica up (cache %d versions, alias poll %.1fs, sample rate %g)",
            settings.asgard_serve_model_cache_size,
            settings.asgard_serve_alias_poll_s,
            settings.asgard_serve_sample_rate,
        )

    # --- background work ---------------------------------------------------------------------
    def _ensure_loop(self) -> None:
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.get_running_loop().create_task(self._background())

    async def _background(self) -> None:
        last_registry = time.monotonic()
        while True:
            await asyncio.sleep(self.settings.asgard_serve_alias_poll_s)
            try:
                await self.predictor.cache.refresh()
                if time.monotonic() - last_registry > _REGISTRY_REFRESH_S:
                    last_registry = time.monotonic()
                    await asyncio.to_thread(self.predictor.online.refresh)
                await self.sampler.flush_if_due()
            except Exception:  # never let the loop die: the next round tries again
                log.exception("prediction replica background round failed")

    # --- calls ---------------------------------------------------------------------------------
    async def predict(self, body: dict[str, Any]) -> dict[str, Any]:
        """Handle call from the control API: validate, predict, return the response as JSON-able dict.

        Raises:
            AsgardError: Bad input (4xx) or an unknown model/alias/feature view (404).
        """
        from pydantic import ValidationError

        try:
            request = PredictRequest.model_validate(body)
        except ValidationError as exc:
            raise InvalidRequest("request body is invalid", detail=json.loads(exc.json(include_url=False))) from None
        return (await self._run(request, ROUTE_CONTROL)).model_dump(mode="json")

    async def _run(self, request: PredictRequest, route: str) -> Any:
        self._ensure_loop()
        start = time.perf_counter()
        response = None
        try:
            response = await self._predict_one(request)
            self.sampler.offer(response)
            return response
        finally:
            self.stats.add(
                request.model_name,
                (time.perf_counter() - start) * 1000,
                response is not None,
                version=response.model_version if response is not None else "none",
                route=route,
                rows=len(response.predictions) if response is not None else 0,
            )

    async def _predict_one(self, request: PredictRequest) -> PredictResponse:
        """One request's predictions (a subclass may route this through ``serve.batch``: bench/realtime.py --batch)."""
        return await self.predictor.predict(request)

    async def served(self) -> dict[str, Any]:
        """Per-model served requests, errors and latency of this replica, and what it has loaded."""
        return {
            "pid": os.getpid(),
            "models": self.stats.snapshot(),
            "loaded": [f"{n}/{v}" for n, v in self.predictor.cache.loaded],
            "references": {f"{n}@{r}": v for (n, r), v in self.predictor.cache.references.items()},
            "swaps": [list(s) for s in self.predictor.cache.swaps],
        }

    def check_health(self) -> None:
        """Serve's health check: the background loop, once started, must still run."""
        if self._loop_task is not None and self._loop_task.done() and not self._loop_task.cancelled():
            exc = self._loop_task.exception()
            if exc is not None:
                raise RuntimeError(f"background loop died: {exc}")

    async def __call__(self, http_request: Any) -> Any:
        """``POST /predict/<model_name>`` (the model may also be in the body)."""
        from pydantic import ValidationError

        from asgard_ray.api.errors import domain_response
        from asgard_ray.api.security import host_allowed

        headers = http_request.headers
        if not self.keys.enabled and not host_allowed(headers.get("host")):
            return _error(
                421, "Host header is not allowed: without an API key predictions only answer to Host 127.0.0.1, localhost or [::1]"
            )
        if self.keys.enabled:
            kind, _, token = headers.get("authorization", "").partition(" ")
            if kind.lower() != "bearer" or not token or self.keys.scope_of(token.strip()) is None:
                return _error(
                    401,
                    "missing or invalid API key; send 'Authorization: Bearer <key>'",
                    None,
                    {"WWW-Authenticate": 'Bearer realm="asgard"'},
                )
        if http_request.method != "POST":
            return _error(405, "use POST /predict/<model_name> with a JSON body", None, {"Allow": "POST"})
        limit = self.settings.asgard_max_body_bytes
        chunks, size = [], 0
        async for chunk in http_request.stream():
            size += len(chunk)
            if size > limit:
                return _error(413, f"request body exceeds the {limit}-byte limit (ASGARD_MAX_BODY_BYTES)")
            chunks.append(chunk)
        try:
            body = json.loads(b"".join(chunks) or b"{}")
        except ValueError:
            return _error(400, "request body is not valid JSON")
        if not isinstance(body, dict):
            return _error(422, "request body must be a JSON object")
        path_name = http_request.url.path.rstrip("/").rsplit("/", 1)[-1]
        if path_name and path_name != PREDICT_PREFIX.strip("/") and body.setdefault("model_name", path_name) != path_name:
            return _error(422, f"model_name {body['model_name']!r} in the body differs from {path_name!r} in the path")
        try:
            request = PredictRequest.model_validate(body)
            return _json(200, (await self._run(request, ROUTE_HTTP)).model_dump_json())
        except ValidationError as exc:
            return _error(422, "request body is invalid", json.loads(exc.json(include_url=False)))
        except AsgardError as exc:
            return domain_response(exc)
        except Exception:
            incident = uuid.uuid4().hex[:12]
            log.exception("prediction failed (incident %s)", incident)
            return _error(500, f"internal error (incident {incident}); the server log has the cause")


def predict_app(settings: Settings, **overrides: Any) -> Application:
    """The prediction application for ``settings`` (``overrides`` replace deployment options)."""
    options = {**deployment_options(settings), **overrides}
    if "num_replicas" in overrides:
        options.pop("autoscaling_config", None)
    return serve.deployment(**options)(PredictionServer).bind(settings)


def build_predict_app(args: dict[str, Any] | None = None) -> Application:
    """``serve run`` / ``serve deploy`` import path: the app for the environment's settings (``args``: ``num_replicas``)."""
    overrides = {"num_replicas": int(args["num_replicas"])} if args and "num_replicas" in args else {}
    return predict_app(Settings(), **overrides)
