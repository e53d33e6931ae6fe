"""Joining the Ray cluster from an entrypoint (the CLI, ``jobs/*``, the Serve app, tests)."""

from __future__ import annotations

import logging

import ray

from asgard_ray.config import Settings

__all__ = ["connect", "ray_address"]

log = logging.getLogger(__name__)


def ray_address(settings: Settings) -> str:
    """The GCS address to join: explicit, else the embedded head."""
    if settings.ray_address:
        return settings.ray_address
    return f"127.0.0.1:{settings.asgard_ray_port}" if settings.embedded else "auto"


def connect(settings: Settings) -> None:
    """Join the cluster once per process, in the platform namespace.

    Ray 2.60 clusters run with token auth; a client only sends the token (from
    ``~/.ray/auth_token`` or ``RAY_AUTH_TOKEN``) when ``RAY_AUTH_MODE=token``, which Ray reads at
    import time: importing ``asgard_ray`` sets it (unless already set) before Ray is imported.
    """
    if ray.is_initialized():
        return
    address = ray_address(settings)
    ray.init(
        address=address,
        namespace=settings.ray_namespace,
        runtime_env={"env_vars": settings.worker_env()},
        log_to_driver=False,
    )
    log.info("connected to Ray at %s (namespace %s)", address, settings.ray_namespace)
