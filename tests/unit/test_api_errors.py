"""The error table: domain errors become JSON {"error", "detail"} with the right status."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from asgard_ray import errors as e
from asgard_ray.api.errors import install_error_handlers


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
