"""schemathesis against the live /openapi.json of the Serve API, and a bounded load test on loopback.

Runs last in the e2e session (file name) because fuzzing mutates state: it may delete feature views
or write monitoring records with generated names.
"""

from __future__ import annotations

import concurrent.futures as cf
import socket
import time

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.e2e.conftest import api_url

pytestmark = pytest.mark.e2e


def test_no_server_errors_and_schema_conformance(stack: dict[str, str]) -> None:
    """Every route of the live /openapi.json: no 5xx, and every response matches its documented schema."""
    from hypothesis import given

    base = api_url(stack)
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    failures: dict[str, str] = {}
    tested = []
    for result in schema.get_all_operations():
        operation = result.ok()
        tested.append(operation.label)

        @given(case=operation.as_strategy())
        @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
        def run(case) -> None:  # noqa: ANN001
            case.call_and_validate(base_url=base, checks=[not_a_server_error, response_schema_conformance], timeout=300)

        try:
            run()
        except Exception as exc:  # collect every route's failure, then report them together
            failures[operation.label] = f"{type(exc).__name__}: {str(exc)[:1500]}"
    assert len(tested) >= 20, tested
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())


def test_bounded_load_on_monitoring_and_health(stack: dict[str, str]) -> None:
    """8 clients for 20 s on 127.0.0.1: no 5xx and every acknowledged record is in history."""
    api = api_url(stack)
    model = f"load_model_{int(time.time())}"
    duration, clients = 20.0, 8
    deadline = time.monotonic() + duration

    def worker(n: int) -> tuple[list[int], list[str]]:
        statuses, ids = [], []
        with httpx.Client(base_url=api, timeout=30) as http:
            i = 0
            while time.monotonic() < deadline and i < 2000:
                if i % 2:
                    r = http.get("/mlops/health")
                else:
                    r = http.post("/mlops/monitoring", json={
                        "model_name": model, "model_version": "1", "metric_type": "custom",
                        "metrics": {"latency_ms": float(i), "client": float(n)},
                    })
                    if r.status_code == 200:
                        ids.append(r.json()["monitoring_id"])
                statuses.append(r.status_code)
                i += 1
        return statuses, ids

    with cf.ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(worker, range(clients)))
    statuses = [s for st, _ in results for s in st]
    acked = {i for _, ids in results for i in ids}
    assert statuses, "no requests were made"
    assert not [s for s in statuses if s >= 500], f"server errors: {sorted(set(statuses))}"
    assert len(acked) > 0
    stored: set[str] = set()
    offset = 0
    while True:
        page = httpx.post(f"{api}/mlops/monitoring/history",
                          json={"model_name": model, "limit": 1000, "offset": offset}, timeout=120)
        assert page.status_code == 200, page.text
        records = page.json()["records"]
        stored |= {r["monitoring_id"] for r in records}
        if len(records) < 1000:
            break
        offset += 1000
    assert acked <= stored, f"{len(acked - stored)} acknowledged records are missing"


def _status(sock: socket.socket) -> int:
    """The status code of the HTTP/1.1 answer on ``sock`` (reads the status line only)."""
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else -1


def test_health_answers_while_100_requests_wait(stack: dict[str, str]) -> None:
    """100 requests in flight (their bodies arrive slowly) hold no thread and no loop: health still answers.

    Each opens ``POST /mlops/models`` on 127.0.0.1 with a Content-Length and sends a first few bytes,
    then waits; health is asked 20 times meanwhile. The bodies then end as invalid JSON, and each of
    the 100 gets its 4xx (nothing is trained).
    """
    port = int(stack["ASGARD_API_PORT"])
    body = b'{"model_name": "slow", ' + b" " * 200 + b"!"  # invalid JSON once complete
    head = (
        f"POST /mlops/models HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    waiting: list[socket.socket] = []
    try:
        for _ in range(100):
            sock = socket.create_connection(("127.0.0.1", port), timeout=60)
            sock.sendall(head + body[:10])
            waiting.append(sock)
        time.sleep(1.0)  # all 100 are in flight, each waiting for the rest of its body
        with httpx.Client(base_url=api_url(stack), timeout=15) as http:
            answers = [http.get("/mlops/health") for _ in range(20)]
        assert [a.status_code for a in answers] == [200] * 20
        assert all(a.json()["status"] == "healthy" for a in answers)
        for sock in waiting:
            sock.sendall(body[10:])
        statuses = [_status(sock) for sock in waiting]
    finally:
        for sock in waiting:
            sock.close()
    assert len(statuses) == 100 and all(400 <= s < 500 for s in statuses), sorted(set(statuses))
