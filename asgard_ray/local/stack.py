"""The embedded stack: a Ray head, an S3 server and an MLflow server on loopback, plus the Serve API.

``up`` is idempotent and supervises: a healthy service is left alone, a dead one (its recorded pid
gone) is cleaned up and started again, and the pid file of a live session is never overwritten. Each
child is watched while it starts: if it exits before it is ready, ``up`` stops at once, names the
service, its exit code and the last lines of its log, and stops everything that this call started.
A port held by a foreign process is reported as exactly that before anything starts on it.

``down`` stops the whole tree of every service (see ``procs``) and nothing else. State survives
``down``/``up``: S3 objects under ``<home>/s3``, the MLflow database ``<home>/mlflow.db``, the Feast
registry (on S3), and the Ray auth token ``<home>/ray/auth_token``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from asgard_ray.config import Settings
from asgard_ray.local.procs import (
    ChildExited,
    PidFiles,
    port_holder,
    port_open,
    service_processes,
    spawn,
    stack_processes,
    stop_processes,
    wait_ready,
)
from asgard_ray.runtime import ensure_token

__all__ = [
    "FEAST_SCRATCH_VARIABLES",
    "WARM_TIMEOUT_S",
    "PortInUse",
    "ServiceStatus",
    "StackError",
    "api_warm",
    "down",
    "service_env",
    "status",
    "up",
    "wait_warm",
]

log = logging.getLogger(__name__)

State = Literal["up", "down", "starting", "orphan"]
WARM_TIMEOUT_S = 300.0
"""How long ``up`` waits for the API's warm-up (``/mlops/health`` ``warm``) before it returns anyway."""


class StackError(RuntimeError):
    """The embedded stack could not be started; the message says which service and why."""


class PortInUse(StackError):
    """A port the stack needs is held by a process the stack did not start."""


@dataclass
class ServiceStatus:
    """One service of the stack as ``asgard status`` shows it."""

    name: str
    state: State
    url: str
    pids: list[int] = field(default_factory=list)

    @property
    def running(self) -> bool:
        """Whether the service is up (its own process runs and answers)."""
        return self.state == "up"


@dataclass(frozen=True)
class _Service:
    name: str
    ports: tuple[int, ...]
    command: Callable[[], list[str]]
    ready: Callable[[], bool]
    timeout: float


def _bin(name: str) -> str:
    """A console script of this interpreter's environment (venv-safe)."""
    return str(Path(sys.executable).parent / name)


FEAST_SCRATCH_VARIABLES = ("PROMETHEUS_MULTIPROCESS_DIR", "PROMETHEUS_MULTIPROC_DIR")
"""Variables Feast's import sets to a process-local temporary folder (``feast.metrics``); never passed on."""


def service_env(settings: Settings) -> dict[str, str]:
    """Environment for the stack's processes: the caller's, plus every setting with secrets as values."""
    env = {**os.environ, **settings.to_env(), **settings.worker_env()}
    env["RAY_AUTH_MODE"] = os.environ.get("RAY_AUTH_MODE", "token")
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # `ray job submit -- python jobs/x.py` runs `python` from the raylet's PATH: make it this environment's
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("PYTHONUNBUFFERED", "1")
    # MLflow 3's server starts job-runner processes (huey consumers for its GenAI jobs, which the platform does not
    # use) that each import the whole server: seconds of CPU right after `asgard up`, under the first requests
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    # importing Feast points these at a temporary folder of the importing process; a node that does not share
    # that /tmp (another host, a private mount) fails every Feast call on it. Each process makes its own.
    for name in FEAST_SCRATCH_VARIABLES:
        env.pop(name, None)
    return env


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback only
            return 200 <= resp.status < 300
    except OSError:
        return False


def _ray_temp_dir(settings: Settings) -> str:
    # Unix socket paths are limited to ~107 bytes, so Ray's temp dir stays short and under /tmp.
    return f"/tmp/asgard-ray-{settings.asgard_ray_port}"


def _services(settings: Settings) -> list[_Service]:
    home = settings.asgard_home.absolute()
    s3_port, mlflow_port = settings.asgard_s3_port, settings.asgard_mlflow_port
    ray_port, dash_port = settings.asgard_ray_port, settings.asgard_dashboard_port

    def s3() -> list[str]:
        return [sys.executable, "-m", "asgard_ray.local.s3server", "--port", str(s3_port), "--data-dir", str(home / "s3")]

    def mlflow() -> list[str]:
        return [
            _bin("mlflow"), "server",
            "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
            "--artifacts-destination", settings.state_uri("mlflow_artifacts"),
            "--host", "127.0.0.1", "--port", str(mlflow_port),
            "--workers", "2",
        ]  # fmt: skip

    def ray() -> list[str]:
        cmd = [
            _bin("ray"), "start", "--head", "--block",
            "--node-ip-address", "127.0.0.1",
            "--port", str(ray_port),
            "--dashboard-host", "127.0.0.1",
            "--dashboard-port", str(dash_port),
            "--temp-dir", _ray_temp_dir(settings),
            "--ray-client-server-port", str(ray_port + 1),
            # a free agent port, so a second stack (tests) on this machine does not collide on 52365
            "--dashboard-agent-listen-port", str(_free_port()),
            "--disable-usage-stats",
        ]  # fmt: skip
        if settings.asgard_num_cpus:
            cmd += ["--num-cpus", str(settings.asgard_num_cpus)]
        return cmd

    return [
        # the S3 server opens its port only once its restore from disk is complete (it reads every object)
        # timeouts are generous: a dead child is reported at once anyway, so they only bound a hang
        _Service("s3", (s3_port,), s3, lambda: port_open(s3_port), 300),
        _Service("mlflow", (mlflow_port,), mlflow, lambda: _http_ok(f"http://127.0.0.1:{mlflow_port}/health"), 240),
        _Service("ray", (ray_port, dash_port), ray, lambda: port_open(dash_port) and port_open(ray_port), 240),
    ]


def _service_state(svc: _Service, pids: PidFiles) -> State:
    alive = bool(pids.alive(svc.name))
    answering = svc.ready()
    if alive:
        return "up" if answering else "starting"
    return "orphan" if answering else "down"


def _start(svc: _Service, settings: Settings, pids: PidFiles, env: dict[str, str], started: list[str]) -> None:
    """Start ``svc`` unless it is up; clean up a dead session of ours first; refuse foreign ports."""
    if pids.alive(svc.name):
        # a live session of ours: never replace it; wait for it if it is still starting
        wait_ready(svc.name, svc.ready, None, pids.log(svc.name), svc.timeout)
        return
    leftovers = service_processes(pids.read(svc.name))
    if leftovers:  # the leader died (kill -9) but its children still hold the ports
        log.warning("%s: leader is dead; stopping %d leftover processes of its session", svc.name, len(leftovers))
        stop_processes(leftovers, timeout=10)
    pids.remove(svc.name)
    for port in svc.ports:
        if port_open(port):
            raise PortInUse(
                f"port {port} for {svc.name} is already in use by {port_holder(port)}, which this stack did not start; "
                f"stop that process or choose another port (see ASGARD_*_PORT)"
            )
    proc = spawn(svc.name, svc.command(), env, pids)
    started.append(svc.name)
    wait_ready(svc.name, svc.ready, proc, pids.log(svc.name), svc.timeout)


def api_warm(health_url: str, timeout: float = 2.0) -> bool | None:
    """What ``/mlops/health`` says of the warm-up: ``True``/``False``, or ``None`` when it does not answer.

    An API that answers without a ``warm`` field (one that predates it) counts as warm.
    """
    try:
        with urllib.request.urlopen(health_url, timeout=timeout) as resp:  # noqa: S310 - loopback only
            return bool(json.loads(resp.read() or b"{}").get("warm", True))
    except (OSError, ValueError):
        return None


def wait_warm(health_url: str, timeout: float = WARM_TIMEOUT_S, every: float = 0.5) -> bool:
    """Wait until the API reports its warm-up done (``/mlops/health`` ``warm: true``), at most ``timeout``.

    Returns whether it did; past the bound the API still works, and its first requests pay what is not warm yet.
    """
    deadline = time.monotonic() + timeout
    while True:
        if api_warm(health_url):
            return True
        if time.monotonic() >= deadline:
            log.warning(
                "the API did not report warm within %.0fs; it answers, but its first requests may be slow (see the replica's log)",
                timeout,
            )
            return False
        time.sleep(every)


def _deploy_serve(settings: Settings, pids: PidFiles, env: dict[str, str]) -> None:
    health = f"http://127.0.0.1:{settings.asgard_api_port}/mlops/health"
    if _http_ok(health):
        wait_warm(health)  # a replica that is still starting (a second `asgard up` right after the first)
        return
    if port_open(settings.asgard_api_port):
        raise PortInUse(
            f"port {settings.asgard_api_port} for the Serve API is already in use by {port_holder(settings.asgard_api_port)}; "
            "stop that process or set ASGARD_API_PORT"
        )
    log_path = pids.log("serve-deploy")
    pids.logs.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as logf:
        result = subprocess.run(
            [sys.executable, "-m", "asgard_ray.api.deploy"],
            env=env,
            stdout=logf,
            stderr=subprocess.STDOUT,
            check=False,
            timeout=300,
        )
    if result.returncode != 0:
        raise ChildExited("the Serve API deployment", result.returncode, log_path)
    wait_ready("the Serve API", lambda: _http_ok(health), None, log_path, 180)
    # the replica answers at once and warms on a thread (the Feast registry writer, warm workers, clients):
    # return when that is done, so the first requests after `asgard up` are as fast as the later ones
    wait_warm(health)


def up(settings: Settings, *, serve: bool = True) -> list[ServiceStatus]:
    """Start every service that is not running yet; return the stack's status.

    Raises:
        StackError: A service exited before it was ready, a port is taken, or a service timed out.
            Everything this call started has been stopped by then.
    """
    from asgard_ray.local import bootstrap  # the bootstrap imports Feast: only pay for it here

    home = settings.asgard_home.absolute()
    home.mkdir(parents=True, exist_ok=True)
    if settings.token_path:
        ensure_token(settings.token_path)
    pids = PidFiles(home)
    env = service_env(settings)
    services = {svc.name: svc for svc in _services(settings)}
    started: list[str] = []
    try:
        _start(services["s3"], settings, pids, env, started)
        bootstrap.prepare_storage(settings)
        _start(services["mlflow"], settings, pids, env, started)
        _start(services["ray"], settings, pids, env, started)
        bootstrap.prepare_feast_repo(settings)
        if serve:
            _deploy_serve(settings, pids, env)
    except BaseException as exc:
        if started:
            log.error("up failed (%s); stopping what this call started: %s", type(exc).__name__, ", ".join(started))
            _stop(settings, reversed(started))
        if isinstance(exc, ChildExited | TimeoutError):
            raise StackError(str(exc)) from exc
        raise
    return status(settings)


def _stop(settings: Settings, names: Iterable[str]) -> list[str]:
    pids = PidFiles(settings.asgard_home.absolute())
    stopped = []
    for name in names:
        leaders = pids.read(name)
        if stop_processes(service_processes(leaders), leaders):
            stopped.append(name)
        pids.remove(name)
    return stopped


def down(settings: Settings) -> list[str]:
    """Stop what ``up`` started (Ray first, S3 last), then anything else still marked as this stack's."""
    stopped = _stop(settings, ("ray", "mlflow", "s3"))
    home = settings.asgard_home.absolute()
    rest = stack_processes(home)
    if rest:  # e.g. job drivers that started a session of their own
        log.info("stopping %d more processes of the stack at %s", len(rest), home)
        stop_processes(rest, timeout=10)
    shutil.rmtree(_ray_temp_dir(settings), ignore_errors=True)  # Ray's sockets and session logs
    return stopped


def status(settings: Settings) -> list[ServiceStatus]:
    """Report each service: up, down, starting, or orphan (something answers, but not our process)."""
    pids = PidFiles(settings.asgard_home.absolute())
    services = _services(settings)
    rows = [
        ServiceStatus(svc.name, _service_state(svc, pids), url, pids.alive(svc.name))
        for svc, url in zip(services, (settings.s3_endpoint or "aws", settings.tracking_uri, settings.dashboard_url), strict=True)
    ]
    api = settings.api_url
    ray_up = rows[-1].state == "up"
    warm = api_warm(f"{api}/mlops/health")
    answering = warm is not None
    api_state: State = "down" if not answering else "orphan" if not ray_up else "up" if warm else "starting"
    rows.append(ServiceStatus("api", api_state, f"{api}/docs", rows[-1].pids if answering and ray_up else []))
    return rows
