"""The warm flag: ``/mlops/health`` reports the replica's warm-up, and ``asgard up`` waits for it (bounded).

``wait_warm`` is exercised against a real HTTP server on loopback that answers like the API does while it
warms (``warm: false``, then ``true``); no Ray, no stack.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from asgard_ray.api.app import create_app
from asgard_ray.api.routes.health import WARM
from asgard_ray.config import Settings
from asgard_ray.local.stack import api_warm, wait_warm


def test_health_reports_the_warm_flag(tmp_path: Path) -> None:
    client = TestClient(create_app(Settings(asgard_home=tmp_path)), base_url="http://127.0.0.1")  # keyless: loopback Host only
    assert client.get("/mlops/health").json()["warm"] is True  # no warm-up (plain uvicorn): nothing to wait for
    WARM.clear()  # what the Serve replica does before its warm-up thread starts
    try:
        body = client.get("/mlops/health").json()
        assert body["status"] == "healthy" and body["warm"] is False  # answering, but still warming
    finally:
        WARM.set()
    assert client.get("/mlops/health").json()["warm"] is True


class _Api:
    """A loopback server answering ``GET /mlops/health`` with ``warm`` from ``self.body``."""

    def __init__(self) -> None:
        self.body: dict | None = {"status": "healthy", "warm": False}
        self.calls = 0
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                api.calls += 1
                data = json.dumps(api.body).encode() if api.body is not None else b""
                self.send_response(200 if api.body is not None else 503)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/mlops/health"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def api() -> Iterator[_Api]:
    server = _Api()
    yield server
    server.server.shutdown()
    server.server.server_close()


def test_api_warm_reads_the_flag(api: _Api) -> None:
    assert api_warm(api.url) is False
    api.body = {"status": "healthy", "warm": True}
    assert api_warm(api.url) is True
    api.body = {"status": "healthy"}  # an API from before the flag: warm
    assert api_warm(api.url) is True
    api.body = None  # a 503
    assert api_warm(api.url) is None
    assert api_warm("http://127.0.0.1:9/mlops/health", timeout=0.5) is None  # nothing listens


def test_wait_warm_returns_once_the_api_is_warm(api: _Api) -> None:
    def warm_later() -> None:
        time.sleep(0.6)
        api.body = {"status": "healthy", "warm": True}

    threading.Thread(target=warm_later, daemon=True).start()
    start = time.monotonic()
    assert wait_warm(api.url, timeout=30, every=0.05) is True
    assert 0.5 < time.monotonic() - start < 30
    assert api.calls >= 2  # it polled while the API was still warming


def test_wait_warm_is_bounded(api: _Api, caplog: pytest.LogCaptureFixture) -> None:
    start = time.monotonic()
    assert wait_warm(api.url, timeout=0.3, every=0.05) is False  # never warm: give up and say so
    assert time.monotonic() - start < 5
    assert "did not report warm" in caplog.text
