"""The FastAPI app factory behind the Serve ingress (also runnable under plain uvicorn)."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from asgard_ray import __version__
from asgard_ray.api.errors import install_error_handlers
from asgard_ray.api.routes import ROUTERS
from asgard_ray.api.security import SecurityMiddleware, load_keys
from asgard_ray.config import Settings

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    """Build the control API for these settings."""
    app = FastAPI(
        title="Asgard MLOps on Ray",
        version=__version__,
        description=(
            "Feature store (Feast), training with trials on Ray and MLflow, model registry, batch scoring "
            'on Ray Data and monitoring in a Ray actor. Errors are JSON: {"error", "detail"}.'
        ),
    )
    app.state.settings = settings
    app.state.services = {}
    install_error_handlers(app)
    keys = load_keys(settings)
    app.add_middleware(SecurityMiddleware, keys=keys, max_body_bytes=settings.asgard_max_body_bytes)
    if keys.enabled:
        log.info("API keys required (%d write, %d read-only)", len(keys.write), len(keys.read))
    for router in ROUTERS:
        app.include_router(router)
    return app
