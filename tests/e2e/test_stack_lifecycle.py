"""The embedded stack as a new user meets it: an empty HOME, real API keys, killed services, taken ports.

Each test starts the real stack through ``asgard up`` (a subprocess, as a user would) on free ports
with its own ``ASGARD_HOME`` and an empty ``HOME``, so nothing from this machine's ``~/.ray`` helps.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from asgard_ray.api.security import READ_POSTS
from asgard_ray.local.procs import STACK_ENV
from tests.conftest import SEED_FEATURE_SPEC, api_url, asgard, free_port, stack_environment, token_path

pytestmark = pytest.mark.e2e

WRITE_KEY = "s3cret-key-123"
READ_KEY = "ro-key-456"
MASKED = "**********"
DIRECT_PORTS = 16
RECORD = {
    "model_name": "lifecycle_model", "model_version": "1", "metric_type": "prediction_drift",
    "metrics": {"psi": 0.08}, "monitoring_id": "mon-lifecycle-0001",
}  # fmt: skip


def stack_procs(env: dict[str, str]) -> list[psutil.Process]:
    """Every live process marked as part of this stack."""
    home = str(Path(env["ASGARD_HOME"]).absolute())
    out = []
    for proc in psutil.process_iter():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and proc.environ().get(STACK_ENV) == home:
                out.append(proc)
        except psutil.Error:
            continue
    return out


def leader(env: dict[str, str], service: str) -> int:
    """The recorded session leader of ``service``."""
    return int((Path(env["ASGARD_HOME"]) / "run" / f"{service}.pid").read_text().split()[0])


def status_states(env: dict[str, str]) -> dict[str, str]:
    """``asgard status`` as {service: state}, read from its table."""
    out = asgard(env, "status", timeout=60).stdout
    states = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.replace("┃", "│").split("│") if c.strip()]
        if len(cells) >= 2 and cells[0] in ("s3", "mlflow", "ray", "api"):
            states[cells[0]] = cells[1]
    return states


def auth(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key is not None else {}


@pytest.fixture(scope="module")
def keyed_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A stack started from an empty HOME with a write key and a read key."""
    low = min(free_port(), 65000)
    env = stack_environment(
        tmp_path_factory.mktemp("keyed"), ASGARD_API_KEY=WRITE_KEY, ASGARD_API_READ_KEYS=json.dumps([READ_KEY]),
        # Ray Serve direct ingress, opt-in: each ingress replica also serves HTTP on a port of this range
        RAY_SERVE_ENABLE_DIRECT_INGRESS="1", RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT=str(low),
        RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT=str(low + DIRECT_PORTS),
    )
    result = asgard(env, "up")
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        yield env
    finally:
        asgard(env, "down", timeout=180)


def direct_url(env: dict[str, str], timeout: float = 120) -> str:
    """The control API replica's own address under direct ingress (found by probing its port range)."""
    low = int(env["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for port in range(low, low + DIRECT_PORTS):
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/mlops/health", timeout=2)
                if r.status_code == 200 and r.json().get("status") == "healthy":
                    return f"http://127.0.0.1:{port}"
            except (httpx.HTTPError, ValueError):
                continue
        time.sleep(1)
    raise AssertionError(f"no replica answers /mlops/health on 127.0.0.1:{low}-{low + DIRECT_PORTS - 1}")


def test_direct_ingress_port_keeps_the_edge_rules(keyed_stack: dict[str, str]) -> None:
    """The replica's own port is the same app: keys and scopes, the body limit, and the same monitoring actor."""
    direct, api = direct_url(keyed_stack), api_url(keyed_stack)
    assert direct != api
    for key in (MASKED, None, "wrong-key"):
        r = httpx.get(f"{direct}/feast/features", headers=auth(key), timeout=60)
        assert r.status_code == 401, (key, r.text)
    record = {**RECORD, "model_name": "direct_ingress_model", "monitoring_id": "mon-direct-0001"}
    assert httpx.post(f"{direct}/mlops/monitoring", json=record, headers=auth(READ_KEY), timeout=60).status_code == 403
    big = {**record, "tags": {"pad": "x" * (11 * 1024 * 1024)}}
    assert httpx.post(f"{direct}/mlops/monitoring", json=big, headers=auth(WRITE_KEY), timeout=60).status_code == 413
    written = httpx.post(f"{direct}/mlops/monitoring", json=record, headers=auth(WRITE_KEY), timeout=60)
    assert written.status_code == 200, written.text
    seen = httpx.get(f"{api}/mlops/monitoring/records/mon-direct-0001", headers=auth(READ_KEY), timeout=60)
    assert seen.status_code == 200 and seen.json()["monitoring_id"] == "mon-direct-0001"  # one actor behind both


def test_up_from_an_empty_home_makes_its_own_token(keyed_stack: dict[str, str]) -> None:
    env = keyed_stack
    assert not (Path(env["HOME"]) / ".ray").exists(), "the stack must not use or create ~/.ray"
    token = token_path(env)
    assert token.exists() and oct(token.stat().st_mode & 0o777) == "0o600"
    printed = asgard(env, "token", timeout=60)
    assert printed.returncode == 0 and printed.stdout.strip() == token.read_text().strip()
    exports = asgard(env, "token", "--env", timeout=60).stdout
    assert f"RAY_AUTH_TOKEN_PATH={token}" in exports and "RAY_AUTH_MODE=token" in exports
    shown = asgard(env, "status", timeout=60).stdout
    assert "asgard token" in shown  # status says how to open the dashboard
    # the dashboard's API refuses a request without the token and accepts it with the token
    dash = f"http://127.0.0.1:{env['ASGARD_DASHBOARD_PORT']}/api/jobs/"
    assert httpx.get(dash, timeout=30).status_code in (401, 403)
    ok = httpx.get(dash, headers={"Authorization": f"Bearer {token.read_text().strip()}"}, timeout=30)
    assert ok.status_code == 200, ok.text


def test_warm_workers_start_with_the_api_before_any_job(keyed_stack: dict[str, str]) -> None:
    """The API replica starts the job supervisor and its warm worker when it starts, not on the first small job.

    Left to the first job, the warm worker was still importing when it came, so that job took the cluster
    path (26 s on a fresh stack) and the next one paid the worker's lazy imports (8.8 s).
    """
    api, h = api_url(keyed_stack), auth(READ_KEY)
    deadline, detail = time.monotonic() + 240, ""
    while time.monotonic() < deadline:
        components = httpx.get(f"{api}/mlops/status", headers=h, timeout=120).json()["components"]
        jobs = next(c for c in components if c["name"] == "jobs")
        detail = jobs["detail"] or ""
        if jobs["healthy"] and re.search(r"warm workers: [1-9]\d* ready", detail):
            break
        time.sleep(2)
    else:
        raise AssertionError(f"no warm worker became ready after asgard up: {detail}")
    listed = httpx.get(f"{api}/mlops/jobs", headers=h, timeout=60)
    assert listed.status_code == 200 and listed.json()["jobs"] == [], listed.text  # no job started it


def test_keys_reach_the_api_as_values(keyed_stack: dict[str, str]) -> None:
    api = api_url(keyed_stack)
    assert httpx.get(f"{api}/feast/features", headers=auth(WRITE_KEY), timeout=60).status_code == 200
    for key in (MASKED, None, "wrong-key"):
        r = httpx.get(f"{api}/feast/features", headers=auth(key), timeout=60)
        assert r.status_code == 401, (key, r.text)
        assert "WWW-Authenticate" in r.headers
    assert httpx.post(f"{api}/mlops/monitoring", json=RECORD, headers=auth(MASKED), timeout=60).status_code == 401
    written = httpx.post(f"{api}/mlops/monitoring", json=RECORD, headers=auth(WRITE_KEY), timeout=60)
    assert written.status_code == 200, written.text

    # the read key: let through on every GET that needs no path parameter, 403 on every mutating route
    spec = httpx.get(f"{api}/openapi.json", headers=auth(READ_KEY), timeout=60).json()
    gets = [p for p, ops in spec["paths"].items() if "get" in ops and "{" not in p]
    assert "/feast/features" in gets
    for path in gets:
        r = httpx.get(f"{api}{path}", headers=auth(READ_KEY), timeout=120)
        assert r.status_code not in (401, 403) and r.status_code < 500, (path, r.status_code, r.text[:300])
    assert httpx.get(f"{api}/feast/features", headers=auth(READ_KEY), timeout=60).status_code == 200
    mutating = [(m.upper(), p) for p, ops in spec["paths"].items() for m in ops if m in ("post", "put", "delete", "patch")]
    assert len(mutating) >= 5
    for method, path in mutating:
        if method == "POST" and path in READ_POSTS:  # queries and predictions only read
            continue
        url = api + path.replace("{", "").replace("}", "")
        r = httpx.request(method, url, json={}, headers=auth(READ_KEY), timeout=60)
        assert r.status_code == 403, (method, path, r.status_code, r.text[:300])

    # no key appears in the stack's logs or in `asgard status`
    logs = "".join(p.read_text(errors="replace") for p in (Path(keyed_stack["ASGARD_HOME"]) / "logs").glob("*.log"))
    status_out = asgard(keyed_stack, "status", timeout=60).stdout
    for secret in (WRITE_KEY, READ_KEY, token_path(keyed_stack).read_text().strip()):
        assert secret not in logs and secret not in status_out


def test_killed_services_show_down_and_up_restores_them(keyed_stack: dict[str, str]) -> None:
    env, api = keyed_stack, api_url(keyed_stack)
    h = auth(WRITE_KEY)
    r = httpx.post(f"{api}/feast/features", json=SEED_FEATURE_SPEC, headers=h, timeout=180)
    assert r.status_code in (200, 201), r.text
    assert httpx.post(f"{api}/mlops/monitoring", json=RECORD, headers=h, timeout=60).status_code == 200

    for service in ("s3", "mlflow", "ray"):
        pid = leader(env, service)
        os.kill(pid, signal.SIGKILL)
        psutil.Process(pid).wait(timeout=10) if psutil.pid_exists(pid) else None
        state = status_states(env)[service]
        assert state in ("down", "orphan"), (service, state)
        again = asgard(env, "up")
        assert again.returncode == 0, (service, again.stdout + again.stderr)
        assert leader(env, service) != pid
        assert status_states(env) == {"s3": "up", "mlflow": "up", "ray": "up", "api": "up"}, service

        # state is intact: the feature view (Feast registry on S3), the monitoring record, MLflow
        listed = httpx.get(f"{api}/feast/features", headers=h, timeout=180).json()
        assert "customer_features" in [v["name"] for v in listed["feature_views"]], service
        hist = httpx.post(f"{api}/mlops/monitoring/history", json={"model_name": "lifecycle_model"}, headers=h, timeout=180)
        assert hist.status_code == 200 and hist.json()["total_records"] == 1, (service, hist.text[:500])
        health = httpx.get(f"{api}/mlops/status", headers=h, timeout=120).json()
        assert all(c["healthy"] for c in health["components"]), (service, health)


def test_up_twice_never_replaces_a_live_session(keyed_stack: dict[str, str]) -> None:
    before = {s: leader(keyed_stack, s) for s in ("s3", "mlflow", "ray")}
    assert asgard(keyed_stack, "up").returncode == 0
    assert {s: leader(keyed_stack, s) for s in ("s3", "mlflow", "ray")} == before


def test_down_leaves_nothing_running(tmp_path: Path) -> None:
    env = stack_environment(tmp_path)
    assert asgard(env, "up").returncode == 0
    procs = stack_procs(env)
    names = {p.name() for p in procs}
    assert {"gcs_server", "raylet"} <= names and len(procs) > 10, names
    stopped = asgard(env, "down", timeout=180)
    assert stopped.returncode == 0, stopped.stderr
    deadline = time.monotonic() + 10
    while stack_procs(env) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = [(p.pid, p.name()) for p in stack_procs(env)]
    assert left == [], left
    for port in ("ASGARD_S3_PORT", "ASGARD_MLFLOW_PORT", "ASGARD_RAY_PORT", "ASGARD_DASHBOARD_PORT", "ASGARD_API_PORT"):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", int(env[port]))) != 0, port


def test_a_port_held_by_another_process_is_named_and_nothing_is_left(tmp_path: Path) -> None:
    env = stack_environment(tmp_path)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(env["ASGARD_MLFLOW_PORT"])))
        squatter.listen()
        result = asgard(env, "up", timeout=180)
        assert result.returncode == 1
        out = " ".join((result.stdout + result.stderr).split())
        assert f"port {env['ASGARD_MLFLOW_PORT']} for mlflow is already in use" in out, out
        assert "this stack did not start" in out
        assert stack_procs(env) == []  # the S3 server this call had started is stopped again
        assert squatter.fileno() != -1  # the foreign process is untouched


def test_a_child_that_dies_while_starting_is_reported_fast(tmp_path: Path) -> None:
    env = stack_environment(tmp_path)
    home = Path(env["ASGARD_HOME"])
    home.mkdir(parents=True)
    (home / "mlflow.db").write_bytes(b"this is not a sqlite database" * 100)  # MLflow exits at start
    started = time.monotonic()
    result = asgard(env, "up", timeout=300)
    elapsed = time.monotonic() - started
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 1
    assert "mlflow exited with code" in out and "before it was ready" in out, out
    assert "mlflow.log" in out and "| " in out  # the tail of its log
    assert stack_procs(env) == []
    print(f"up -> failure report for a dead child: {elapsed:.1f}s")
