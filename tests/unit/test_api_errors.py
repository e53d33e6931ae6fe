"""The error table: domain errors become JSON {"error", "detail"} with the right status."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from asgard_ray import errors as e
from asgard_ray.api.errors import install_error_handlers
from asgard_ray.config import Settings


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/raise/{kind}")
    def _raise(kind: str) -> dict:
        table = {
            "invalid": e.InvalidRequest("bad", detail={"field": "x"}),
            "missing": e.NotFound("no such model"),
            "conflict": e.Conflict("exists"),
            "large": e.PayloadTooLarge("too big"),
            "unauth": e.Unauthorized("key needed"),
            "forbidden": e.Forbidden("read-only key"),
            "down": e.ServiceUnavailable("mlflow down"),
        }
        if kind == "boom":
            raise RuntimeError("secret internals")
        raise table[kind]

    @app.get("/typed")
    def _typed(n: int) -> dict:
        return {"n": n}

    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize(
    ("kind", "status"),
    [("invalid", 422), ("missing", 404), ("conflict", 409), ("large", 413), ("unauth", 401), ("forbidden", 403), ("down", 503)],
)
def test_domain_errors_map_to_status(client: TestClient, kind: str, status: int) -> None:
    r = client.get(f"/raise/{kind}")
    assert r.status_code == status
    assert set(r.json()) == {"error", "detail"}


def test_unauthorized_carries_www_authenticate(client: TestClient) -> None:
    assert client.get("/raise/unauth").headers["www-authenticate"] == "Bearer"


def test_unexpected_error_hides_details(client: TestClient) -> None:
    r = client.get("/raise/boom")
    assert r.status_code == 500
    assert "secret internals" not in r.text
    assert r.json()["detail"]["incident"]


def test_validation_error_names_the_field(client: TestClient) -> None:
    r = client.get("/typed", params={"n": "abc"})
    assert r.status_code == 422
    assert "n" in r.json()["error"]


def test_every_route_and_dependency_is_async(tmp_path: Path) -> None:
    """A sync route or dependency runs in FastAPI's thread pool: a hop per request, and a pool that long calls can fill.

    Blocking work (MLflow, Feast, S3) belongs in ``asyncio.to_thread`` inside an ``async def`` route.
    """
    import inspect

    from fastapi.routing import APIRoute

    from asgard_ray.api.app import create_app

    app = create_app(Settings(asgard_home=tmp_path))
    sync: list[str] = []

    def walk(dependant: Any, where: str) -> None:
        for dep in dependant.dependencies:
            if dep.call is not None and not inspect.iscoroutinefunction(dep.call):
                sync.append(f"{where}: dependency {dep.call.__name__}")
            walk(dep, where)

    def api_routes(routes: list[Any]) -> list[APIRoute]:
        out: list[APIRoute] = []
        for r in routes:
            if isinstance(r, APIRoute):
                out.append(r)
            elif getattr(r, "original_router", None) is not None:  # an included router (FastAPI >= 0.16x)
                out.extend(api_routes(r.original_router.routes))
        return out

    routes = api_routes(app.routes)
    assert len(routes) > 20  # the whole API, not an empty app
    for route in routes:
        where = f"{sorted(route.methods)} {route.path}"
        if not inspect.iscoroutinefunction(route.endpoint):
            sync.append(f"{where}: route {route.endpoint.__name__}")
        walk(route.dependant, where)
    assert sync == []
