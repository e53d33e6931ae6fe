"""The control API: a FastAPI app served by a Ray Serve ingress."""

from asgard_ray.api.app import create_app

__all__ = ["create_app"]
