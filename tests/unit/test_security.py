"""API keys, scopes, the Host rule, the body limit (declared and chunked) and the bind rule (no backends)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from asgard_ray.api import security
from asgard_ray.api.app import create_app
from asgard_ray.api.security import (
    ApiKeys,
    SecurityMiddleware,
    check_bind,
    check_serve_bind,
    host_allowed,
    load_keys,
    serve_http_host,
)
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


# --- the Host rule, the body limit on a bare ASGI app, the real bind ----------------------------------

async def _echo(scope: dict, receive: Any, send: Any) -> None:
    """A bare ASGI app that answers 200 with the body it read, and how many receive() messages it took."""
    body, messages = b"", 0
    while True:
        message = await receive()
        messages += 1
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-messages", str(messages).encode())]})
    await send({"type": "http.response.body", "body": body})


def _call(keys: ApiKeys, method: str, url: str, *, limit: int = 1024, **kwargs: object) -> httpx.Response:
    app = SecurityMiddleware(_echo, keys=keys, max_body_bytes=limit)

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as http:
            return await http.request(method, url, **kwargs)  # type: ignore[arg-type]

    return asyncio.run(go())


NO_KEYS = ApiKeys()
KEYS = ApiKeys(write=(WRITE.encode(),), read=(READ.encode(),))


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "127.0.0.1:8000", "localhost", "LOCALHOST:1", "localhost:65535", "[::1]", "[::1]:8000"],
)
def test_keyless_mode_answers_loopback_hosts(host: str) -> None:
    assert host_allowed(host)
    r = _call(NO_KEYS, "POST", "/x", content=b"hello", headers={"Host": host})
    assert (r.status_code, r.content) == (200, b"hello")


@pytest.mark.parametrize(
    "host",
    [
        "evil.example.com", "evil.example.com:8000", "127.0.0.1.nip.io", "localhost.evil.com", "localhost.",
        "127.0.0.2", "0.0.0.0", "[::]", "::1", "[::1", "127.0.0.1:", "127.0.0.1:80:80", "127.0.0.1:abc",
        "user@127.0.0.1", "", "testserver",
    ],
)
def test_keyless_mode_refuses_other_hosts(host: str) -> None:
    assert not host_allowed(host)
    r = _call(NO_KEYS, "POST", "/x", content=b"hello", headers={"Host": host})
    assert r.status_code == 421
    assert "Host" in r.json()["error"] and "127.0.0.1, localhost or [::1]" in r.json()["error"]
    assert r.content != b"hello"


def test_missing_host_is_refused_without_keys() -> None:
    async def go() -> list[dict]:
        sent: list[dict] = []
        app = SecurityMiddleware(_echo, keys=NO_KEYS, max_body_bytes=10)

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        await app({"type": "http", "method": "GET", "path": "/", "headers": []}, receive, send)
        return sent

    sent = asyncio.run(go())
    assert sent[0]["status"] == 421


def test_with_keys_any_host_is_served() -> None:
    auth = {"Authorization": f"Bearer {WRITE}"}
    r = _call(KEYS, "POST", "/x", content=b"hi", headers={**auth, "Host": "asgard.internal.example:443"})
    assert (r.status_code, r.content) == (200, b"hi")
    r = _call(KEYS, "POST", "/x", content=b"hi", headers={"Host": "evil.example.com"})
    assert r.status_code == 401  # any Host, but still a key


@pytest.mark.parametrize(
    ("headers", "method", "status"),
    [
        ({}, "GET", 401),
        ({"Authorization": "Bearer nope"}, "GET", 401),
        ({"Authorization": f"Token {WRITE}"}, "GET", 401),
        ({"Authorization": "Bearer "}, "GET", 401),
        ({"Authorization": f"Bearer {READ}"}, "GET", 200),
        ({"Authorization": f"Bearer {READ}"}, "POST", 403),
        ({"Authorization": f"Bearer {READ}"}, "DELETE", 403),
        ({"Authorization": f"Bearer {WRITE}"}, "POST", 200),
        ({"Authorization": f"bearer {WRITE}"}, "PUT", 200),
    ],
)
def test_keys_and_scopes_on_a_bare_app(headers: dict, method: str, status: int) -> None:
    r = _call(KEYS, method, "/mlops/registry", headers=headers)
    assert r.status_code == status
    if status == 401:
        assert r.headers["www-authenticate"].startswith("Bearer") and "API key" in r.json()["error"]
    if status == 403:
        assert "read-only" in r.json()["error"]
    assert WRITE not in r.text and READ not in r.text


def test_read_key_may_post_the_history_query() -> None:
    r = _call(KEYS, "POST", "/mlops/monitoring/history", content=b"{}", headers={"Authorization": f"Bearer {READ}"})
    assert r.status_code == 200


def test_declared_length_over_the_limit_is_413_before_reading() -> None:
    r = _call(NO_KEYS, "POST", "/x", content=b"x" * 1025)
    assert r.status_code == 413
    assert "1025 bytes" in r.json()["error"] and "ASGARD_MAX_BODY_BYTES" in r.json()["error"]


def _chunks(total: int, size: int = 100) -> Iterator[bytes]:
    for start in range(0, total, size):
        yield b"x" * min(size, total - start)


async def _achunks(total: int, size: int = 100) -> AsyncIterator[bytes]:
    for chunk in _chunks(total, size):
        yield chunk


def test_chunked_body_over_the_limit_is_413() -> None:
    r = _call(NO_KEYS, "POST", "/x", content=_achunks(5000))
    assert r.status_code == 413
    assert "1024-byte limit" in r.json()["error"]


def test_chunked_body_within_the_limit_reaches_the_app_whole() -> None:
    r = _call(NO_KEYS, "POST", "/x", content=_achunks(1024))
    assert r.status_code == 200
    assert r.content == b"x" * 1024
    assert r.headers["x-messages"] == "1"  # replayed as one message


def test_chunked_over_limit_is_413_through_fastapi(tmp_path: Path) -> None:
    """FastAPI turns an error raised while it reads the body into 400: the limit must act before it."""
    settings = Settings(asgard_home=tmp_path, asgard_max_body_bytes=2048)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as http:
        r = http.post("/feast/features", content=_chunks(10_000), headers={"content-type": "application/json"})
        assert "content-length" not in {k.lower() for k in r.request.headers}
        assert r.request.headers.get("transfer-encoding") == "chunked"
        assert r.status_code == 413, r.text
        assert "2048-byte limit" in r.json()["error"]
        # a small chunked body still reaches validation
        r = http.post("/feast/features", content=_chunks(2, 1), headers={"content-type": "application/json"})
        assert r.status_code == 422


def test_foreign_host_refused_by_the_real_app(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(asgard_home=tmp_path)), base_url="http://evil.example.com") as http:
        r = http.get("/mlops/health")
        assert r.status_code == 421 and "evil.example.com" in r.json()["error"]
    with TestClient(create_app(Settings(asgard_home=tmp_path)), base_url="http://localhost:8000") as http:
        assert http.get("/mlops/health").status_code != 421


# --- the bind rule against Serve's real http_options ------------------------------------------------


def test_serve_http_host_never_starts_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    if ray.is_initialized():
        pytest.skip("Ray already up in this process")

    def no_ray(*args: object, **kwargs: object) -> None:
        raise AssertionError("must not start Ray")

    monkeypatch.setattr(ray, "init", no_ray)
    assert serve_http_host() is None


@pytest.mark.parametrize(
    ("real_host", "key", "refused"),
    [
        ("0.0.0.0", None, True),
        ("::", None, True),
        ("10.1.2.3", None, True),
        ("my-head.svc", None, True),
        ("0.0.0.0", "k", False),
        ("127.0.0.1", None, False),
        ("::1", None, False),
        (None, None, False),
    ],
)
def test_check_serve_bind_reads_the_proxies_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, real_host: str | None, key: str | None, refused: bool
) -> None:
    """ASGARD_API_HOST says loopback; what the controller's http_options say decides."""
    monkeypatch.setattr(security, "serve_http_host", lambda: real_host)
    settings = Settings(asgard_home=tmp_path, asgard_api_host="127.0.0.1", asgard_api_key=key)
    if refused:
        with pytest.raises(InvalidRequest, match="without an API key") as info:
            check_serve_bind(settings)
        assert repr(real_host) in info.value.message
    else:
        check_serve_bind(settings)
