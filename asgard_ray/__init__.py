"""Asgard on Ray: an MLOps platform as a distributed Ray application."""

from asgard_ray.config import Settings

__all__ = ["Settings", "__version__"]
__version__ = "0.1.0"
