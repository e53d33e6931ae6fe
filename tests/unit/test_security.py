"""API keys, scopes, the body limit and the bind rule (no backends touched)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from asgard_ray.api.app import create_app
from asgard_ray.api.security import check_bind, load_keys
from asgard_ray.config import Settings
from asgard_ray.errors import InvalidRequest

WRITE, READ = "w-key-0123456789", "r-key-9876543210"


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    settings = Settings(asgard_home=tmp_path, asgard_api_key=WRITE, asgard_api_read_keys=[READ], asgard_max_body_bytes=2048)
    return TestClient(create_app(settings))


def test_health_is_open(client: TestClient) -> None:
    assert client.get("/mlops/health").status_code == 200


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {WRITE}"}])
def test_missing_or_wrong_key_is_401(client: TestClient, headers: dict) -> None:
    r = client.post("/feast/features", json={}, headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert WRITE not in r.text and READ not in r.text
    assert client.get("/openapi.json", headers=headers).status_code == 401


def test_read_key_reads_but_cannot_mutate(client: TestClient) -> None:
    auth = {"Authorization": f"Bearer {READ}"}
    assert client.get("/openapi.json", headers=auth).status_code == 200
    r = client.post("/feast/features", json={}, headers=auth)
    assert r.status_code == 403
    assert client.delete("/feast/features/x", headers=auth).status_code == 403


def test_write_key_passes_auth(client: TestClient) -> None:
    r = client.post("/feast/features", json={}, headers={"Authorization": f"Bearer {WRITE}"})
    assert r.status_code == 422  # past auth, stopped by validation of the empty body


def test_large_body_is_413(client: TestClient) -> None:
    r = client.post("/feast/features", content=b"x" * 4096, headers={"Authorization": f"Bearer {WRITE}", "content-type": "application/json"})
    assert r.status_code == 413
    assert "entities_source" in r.json()["error"]


def test_key_file(tmp_path: Path) -> None:
    f = tmp_path / "keys"
    f.write_text("# keys\nwrite:abc\nread:def\n")
    keys = load_keys(Settings(asgard_home=tmp_path, asgard_api_key_file=f))
    assert keys.scope_of("abc") == "write" and keys.scope_of("def") == "read" and keys.scope_of("x") is None


def test_bind_beyond_loopback_needs_a_key(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="ASGARD_API_KEY"):
        check_bind(Settings(asgard_home=tmp_path, asgard_api_host="0.0.0.0"))
    check_bind(Settings(asgard_home=tmp_path, asgard_api_host="0.0.0.0", asgard_api_key="k"))
    check_bind(Settings(asgard_home=tmp_path, asgard_api_host="127.0.0.1"))
