"""Routers of the control API, one module per capability."""

from asgard_ray.api.routes import features, health, monitoring, registry, scoring, training

ROUTERS = [health.router, features.router, training.router, registry.router, scoring.router, monitoring.router]

__all__ = ["ROUTERS"]
