"""Typed dependencies for the routes: settings and the services built once per app."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from asgard_ray.config import Settings
from asgard_ray.features.registry import FeatureRegistry

__all__ = ["FeaturesDep", "SettingsDep", "get_settings", "service"]


async def get_settings(request: Request) -> Settings:
    """The app's settings (``async``: a sync dependency costs each request a hop to the thread pool)."""
    return request.app.state.settings


def service(request: Request, name: str, factory: type) -> object:
    """A service object cached on the app (one per replica); the factories only keep the settings, so no I/O here."""
    services = request.app.state.services
    if name not in services:
        services[name] = factory(request.app.state.settings)
    return services[name]


async def get_features(request: Request) -> FeatureRegistry:
    """The feature-store service."""
    return service(request, "features", FeatureRegistry)  # type: ignore[return-value]


SettingsDep = Annotated[Settings, Depends(get_settings)]
FeaturesDep = Annotated[FeatureRegistry, Depends(get_features)]
