"""Routers of the control API, one module per capability."""

from asgard_ray.api.routes import features, health

ROUTERS = [health.router, features.router]

__all__ = ["ROUTERS"]
