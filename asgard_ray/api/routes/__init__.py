"""Routers of the control API, one module per capability."""

from asgard_ray.api.routes import features, health, jobs, monitoring, registry, scoring, serving, training

ROUTERS = [health.router, features.router, training.router, jobs.router, registry.router, scoring.router, monitoring.router, serving.router]

__all__ = ["ROUTERS"]
