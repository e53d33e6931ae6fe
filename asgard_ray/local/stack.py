"""The embedded stack: a Ray head, an S3 server and an MLflow server on loopback, plus the Serve API.

``up`` is idempotent (a service already healthy is left alone), ``down`` stops only the processes
that ``up`` started (each is spawned as a session leader and recorded in ``<home>/run``), and state
survives ``down``/``up``: S3 objects under ``<home>/s3``, the MLflow database ``<home>/mlflow.db``,
and the Feast registry, which lives on S3.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from asgard_ray.config import Settings
from asgard_ray.local.procs import PidFiles, port_open, spawn, stop_session, wait_until

__all__ = ["ServiceStatus", "down", "service_env", "status", "up"]

log = logging.getLogger(__name__)

SERVICES = ("s3", "mlflow", "ray")


@dataclass
class ServiceStatus:
    """One service of the stack as ``asgard status`` shows it."""

    name: str
    running: bool
    url: str
    pids: list[int]


def _bin(name: str) -> str:
    """A console script of this interpreter's environment (venv-safe)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


def service_env(settings: Settings) -> dict[str, str]:
    """Environment for the stack's processes: the caller's, plus every setting, absolute paths."""
    env = dict(os.environ)
    for name, value in settings.model_dump(exclude={"s3_endpoint", "tracking_uri", "dashboard_url", "api_url"}).items():
        if value is None:
            continue
        if isinstance(value, list):
            env[name.upper()] = json.dumps(value)
        elif isinstance(value, Path):
            env[name.upper()] = str(value.absolute())
        else:
            env[name.upper()] = str(getattr(value, "value", value))
    env.update(settings.worker_env())
    env["RAY_AUTH_MODE"] = env.get("RAY_AUTH_MODE", "token")
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # `ray job submit -- python jobs/x.py` runs `python` from the raylet's PATH: make it this environment's
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback only
        return 200 <= resp.status < 300


def _ray_temp_dir(settings: Settings) -> str:
    # Unix socket paths are limited to ~107 bytes, so Ray's temp dir stays short and under /tmp.
    return f"/tmp/asgard-ray-{settings.asgard_ray_port}"


def _start_s3(settings: Settings, pids: PidFiles, env: dict[str, str]) -> None:
    if pids.alive("s3") and port_open(settings.asgard_s3_port):
        return
    data_dir = (settings.asgard_home / "s3").absolute()
    cmd = [sys.executable, "-m", "asgard_ray.local.s3server", "--port", str(settings.asgard_s3_port), "--data-dir", str(data_dir)]
    spawn("s3", cmd, env, pids)
    wait_until(lambda: port_open(settings.asgard_s3_port), 60, "the S3 server")
    wait_until(lambda: (data_dir / "objects").exists(), 60, "the S3 restore")


def _start_mlflow(settings: Settings, pids: PidFiles, env: dict[str, str]) -> None:
    health = f"http://127.0.0.1:{settings.asgard_mlflow_port}/health"
    if pids.alive("mlflow") and port_open(settings.asgard_mlflow_port):
        return
    db = (settings.asgard_home / "mlflow.db").absolute()
    cmd = [
        _bin("mlflow"), "server",
        "--backend-store-uri", f"sqlite:///{db}",
        "--artifacts-destination", settings.s3_uri("mlflow-artifacts"),
        "--host", "127.0.0.1", "--port", str(settings.asgard_mlflow_port),
        "--workers", "2",
    ]
    spawn("mlflow", cmd, env, pids)
    wait_until(lambda: _http_ok(health), 120, "the MLflow server")


def _start_ray(settings: Settings, pids: PidFiles, env: dict[str, str]) -> None:
    if pids.alive("ray") and port_open(settings.asgard_ray_port) and port_open(settings.asgard_dashboard_port):
        return
    cmd = [
        _bin("ray"), "start", "--head", "--block",
        "--node-ip-address", "127.0.0.1",
        "--port", str(settings.asgard_ray_port),
        "--dashboard-host", "127.0.0.1",
        "--dashboard-port", str(settings.asgard_dashboard_port),
        "--temp-dir", _ray_temp_dir(settings),
        "--ray-client-server-port", str(settings.asgard_ray_port + 1),
        # a free agent port, so a second stack (tests) on this machine does not collide on 52365
        "--dashboard-agent-listen-port", str(_free_port()),
        "--disable-usage-stats",
    ]
    if settings.asgard_num_cpus:
        cmd += ["--num-cpus", str(settings.asgard_num_cpus)]
    spawn("ray", cmd, env, pids)
    wait_until(lambda: port_open(settings.asgard_dashboard_port), 120, "the Ray dashboard")


def _deploy_serve(settings: Settings, env: dict[str, str]) -> None:
    health = f"http://127.0.0.1:{settings.asgard_api_port}/mlops/health"
    try:
        if _http_ok(health):
            return
    except OSError:
        pass
    logs = (settings.asgard_home / "logs").absolute()
    with open(logs / "serve-deploy.log", "ab") as logf:
        subprocess.run(
            [sys.executable, "-m", "asgard_ray.api.deploy"], env=env, stdout=logf,
            stderr=subprocess.STDOUT, check=True, timeout=300,
        )
    wait_until(lambda: _http_ok(health), 180, "the Serve API")


def up(settings: Settings, *, serve: bool = True) -> list[ServiceStatus]:
    """Start every service that is not running yet; return the stack's status."""
    from asgard_ray.local import bootstrap  # the bootstrap imports Feast: only pay for it here

    settings.asgard_home.mkdir(parents=True, exist_ok=True)
    pids = PidFiles(settings.asgard_home.absolute())
    env = service_env(settings)
    _start_s3(settings, pids, env)
    bootstrap.prepare_storage(settings)
    _start_mlflow(settings, pids, env)
    _start_ray(settings, pids, env)
    bootstrap.prepare_feast_repo(settings)
    if serve:
        _deploy_serve(settings, env)
    return status(settings)


def down(settings: Settings) -> list[str]:
    """Stop what ``up`` started (Ray first, S3 last so its final sync sees every write)."""
    pids = PidFiles(settings.asgard_home.absolute())
    stopped = []
    for name in ("ray", "mlflow", "s3"):
        for pid in pids.read(name):
            if stop_session(pid):
                stopped.append(name)
        pids.remove(name)
    return stopped


def status(settings: Settings) -> list[ServiceStatus]:
    """Report each service: its pids, whether it answers, and where to look."""
    pids = PidFiles(settings.asgard_home.absolute())

    def check(url: str) -> bool:
        try:
            return _http_ok(url)
        except OSError:
            return False

    api = settings.api_url
    return [
        ServiceStatus("s3", port_open(settings.asgard_s3_port), settings.s3_endpoint or "aws", pids.alive("s3")),
        ServiceStatus("mlflow", check(f"{settings.tracking_uri}/health"), settings.tracking_uri, pids.alive("mlflow")),
        ServiceStatus("ray", port_open(settings.asgard_dashboard_port), settings.dashboard_url, pids.alive("ray")),
        ServiceStatus("api", check(f"{api}/mlops/health"), f"{api}/docs", []),
    ]
