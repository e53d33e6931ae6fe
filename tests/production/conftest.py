"""The production-local profile: the platform on real Redis, Postgres and Prometheus, started once per session.

``prod_stack`` is one stack in production mode (``ASGARD_MODE=production``) on loopback, free ports and
temporary folders:

- the project's S3 server (``asgard_ray.local.s3server``): objects, MLflow artifacts, the gold table;
- Postgres (Debian's binaries, run as the ``postgres`` user when the session is root): MLflow's backend
  store (database ``mlflow``) and Feast's SQL registry (database ``feast``, ``FEAST_REGISTRY_TYPE=sql``);
- Redis (append-only, fsync per write): Feast's online store (``FEAST_ONLINE_STORE=redis``);
- ``mlflow server --backend-store-uri postgresql+psycopg://...`` (the URI travels in the environment);
- a Ray head with a metrics export port (``ray start --metrics-export-port``) and the Serve API on it.

Secrets (the database password inside the registry URL and MLflow's store URI, Redis's password, the S3
secret) are random per session and travel as environment values only. ``prometheus`` starts Prometheus
scraping the head's metrics export, for the metrics test only. ``seed`` runs the seed's five steps once.
Teardown stops each server by its pid, then every process still marked as this stack's.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from asgard_ray.config import Settings
from asgard_ray.local.procs import STACK_ENV, port_open
from asgard_ray.runtime import ensure_token
from tests.conftest import free_port, isolated_settings
from tests.production.services import (
    Postgres,
    Service,
    http_ok,
    postgres_service,
    prometheus_service,
    redis_service,
    stop_marked,
    wait_for,
)
from tests.production.workflow import SeedRun, run_seed

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MODEL = "prod_churn"
"""The model the session's seed workflow trains and registers."""
PROJECT = "asgard_prod"
"""The Feast project of the production stack."""


@dataclass
class ProdStack:
    """The running production-local stack."""

    settings: Settings
    env: dict[str, str]
    home: Path
    api_url: str
    dashboard_url: str
    metrics_port: int
    s3: Service
    postgres: Postgres
    redis: Service
    redis_password: str
    mlflow: Service
    ray: Service

    def client(self, timeout: float = 900) -> httpx.Client:
        """An HTTP client of the control API (and the prediction app under ``/predict``)."""
        return httpx.Client(base_url=self.api_url, timeout=timeout)

    def python(self, *args: str, timeout: float = 300, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``python <args>`` in the repo with the stack's environment (a process of the platform's own)."""
        return subprocess.run(
            [sys.executable, *args],
            cwd=REPO,
            env={**self.env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _environment(settings: Settings, mark: Path) -> dict[str, str]:
    """Every setting as an environment variable, over this process's environment minus other stacks' settings."""
    names = {name.upper() for name in Settings.model_fields}
    inherited = {
        k: v
        for k, v in os.environ.items()
        if k.upper() not in names and not k.startswith(("ASGARD_", "MLFLOW_", "S3_", "FEAST_", "AWS_", "RAY_ADDRESS"))
    }
    env = {**inherited, **settings.to_env(), **settings.worker_env()}
    env.update(
        RAY_AUTH_MODE="token",
        RAY_USAGE_STATS_ENABLED="0",
        PYTHONUNBUFFERED="1",
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        # every process of the stack (Ray workers too) runs this checkout's code, whatever the venv's install points at
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
    )
    env[STACK_ENV] = str(mark)
    return env


@pytest.fixture(scope="session")
def prod_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProdStack]:
    """The production-local stack, up; stopped (by pid) at the end of the session."""
    home = tmp_path_factory.mktemp("prod")
    pg_root = Path(tempfile.mkdtemp(prefix="asgard-pg-"))  # its own folder: owned by the postgres user
    ports = {name: free_port() for name in ("s3", "pg", "redis", "mlflow", "gcs", "dash", "metrics", "api", "agent", "client")}
    pg_password, redis_password = secrets.token_hex(16), secrets.token_hex(16)
    registry_url = f"postgresql+psycopg://asgard:{pg_password}@127.0.0.1:{ports['pg']}/feast"
    settings = isolated_settings(
        asgard_mode="production",
        asgard_home=home / "home",
        aws_access_key_id="asgard-prod",
        aws_secret_access_key=secrets.token_hex(16),
        s3_endpoint_url=f"http://127.0.0.1:{ports['s3']}",
        asgard_s3_port=ports["s3"],
        mlflow_tracking_uri=f"http://127.0.0.1:{ports['mlflow']}",
        feast_repo_path=home / "home" / "feast_repo",
        feast_project=PROJECT,
        feast_online_store="redis",
        feast_redis_connection_string=f"127.0.0.1:{ports['redis']},password={redis_password}",
        feast_registry_type="sql",
        feast_registry_path=registry_url,
        ray_address=f"127.0.0.1:{ports['gcs']}",
        asgard_ray_port=ports["gcs"],
        asgard_dashboard_port=ports["dash"],
        asgard_api_port=ports["api"],
        asgard_serve_alias_poll_s=0.5,
        ray_auth_token_path=ensure_token(home / "ray" / "auth_token"),  # a token of the stack's own
    )
    env = _environment(settings, home)
    logs = home / "logs"
    s3 = Service(
        "s3",
        [sys.executable, "-m", "asgard_ray.local.s3server", "--port", str(ports["s3"]), "--data-dir", str(home / "s3")],
        lambda: port_open(ports["s3"]),
        logs / "s3.log",
        env=env,
        cwd=REPO,
    )
    postgres = postgres_service(pg_root, ports["pg"], pg_password, env)
    redis = redis_service(home / "redis", ports["redis"], redis_password, env)
    mlflow = Service(
        "mlflow",
        [
            str(BIN / "mlflow"), "server",
            "--artifacts-destination", settings.s3_uri("mlflow-artifacts"),
            "--host", "127.0.0.1", "--port", str(ports["mlflow"]), "--workers", "2",
        ],
        lambda: http_ok(f"{settings.tracking_uri}/health"),
        logs / "mlflow.log",
        # the store URI holds the database password: it travels in the environment, never on a command line
        env={**env, "MLFLOW_BACKEND_STORE_URI": f"postgresql+psycopg://asgard:{pg_password}@127.0.0.1:{ports['pg']}/mlflow"},
        cwd=home,
        timeout=300,
    )  # fmt: skip
    ray_temp = f"/tmp/asgard-prod-{ports['gcs']}"  # short: Unix socket paths are limited to ~107 bytes
    ray_env = {k: v for k, v in env.items() if k != "RAY_ADDRESS"}
    ray = Service(
        "ray",
        [
            str(BIN / "ray"), "start", "--head", "--block",
            "--node-ip-address", "127.0.0.1", "--port", str(ports["gcs"]),
            "--dashboard-host", "127.0.0.1", "--dashboard-port", str(ports["dash"]),
            "--dashboard-agent-listen-port", str(ports["agent"]), "--ray-client-server-port", str(ports["client"]),
            "--metrics-export-port", str(ports["metrics"]),
            "--temp-dir", ray_temp, "--num-cpus", "2", "--disable-usage-stats",
        ],
        lambda: port_open(ports["dash"]) and port_open(ports["gcs"]) and port_open(ports["metrics"]),
        logs / "ray.log",
        env=ray_env,
        cwd=home,
        timeout=240,
        stop_tree=True,
        retries=1,
    )  # fmt: skip
    started: list[Service] = []
    try:
        for svc in (s3, postgres.service, redis):
            started.append(svc.launch())
        for svc in (s3, postgres.service, redis):
            svc.wait_ready()
        for db in ("mlflow", "feast"):
            postgres.create_database(db)
        started.append(mlflow.launch())
        started.append(ray.launch())
        # buckets, the gold namespace and table, feature_store.yaml: in a process of the stack's own environment
        boot = subprocess.Popen(
            [
                sys.executable, "-c",
                "from asgard_ray.config import Settings; from asgard_ray.local.bootstrap import prepare_feast_repo, prepare_storage; "
                "s = Settings(); prepare_storage(s); prepare_feast_repo(s)",
            ],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        ray.wait_ready()
        t0 = time.monotonic()  # the Serve API needs Ray only: it deploys while MLflow and the bootstrap finish
        deploy = subprocess.Popen(
            [sys.executable, "-m", "asgard_ray.api.deploy"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        boot_out, _ = boot.communicate(timeout=300)
        assert boot.returncode == 0, boot_out[-3000:]
        mlflow.wait_ready()
        deploy_out, _ = deploy.communicate(timeout=400)
        assert deploy.returncode == 0, deploy_out[-5000:]
        api = settings.api_url
        wait_for(lambda: http_ok(f"{api}/mlops/health"), 240, "the control API to answer /mlops/health")
        # the prediction app answers GET with its own 405 once it runs (the proxy says 404 before)
        wait_for(lambda: httpx.get(f"{api}/predict/none", timeout=5).status_code == 405, 240, "the prediction app to run")
        log.info("Serve API deployed and answering in %.1fs", time.monotonic() - t0)
        yield ProdStack(
            settings=settings,
            env=env,
            home=home,
            api_url=api,
            dashboard_url=settings.dashboard_url,
            metrics_port=ports["metrics"],
            s3=s3,
            postgres=postgres,
            redis=redis,
            redis_password=redis_password,
            mlflow=mlflow,
            ray=ray,
        )
    finally:
        for svc in (ray, mlflow):
            if svc in started:
                svc.stop()
        log.info("stopped %d more processes of the stack", stop_marked(str(home)))  # Ray workers, job drivers, ... by pid
        for svc in (redis, postgres.service, s3):
            if svc in started:
                svc.stop()
        shutil.rmtree(ray_temp, ignore_errors=True)
        shutil.rmtree(pg_root, ignore_errors=True)


@pytest.fixture(scope="session")
def seed(prod_stack: ProdStack) -> SeedRun:
    """The seed's five steps, once, on the production stack (MLflow on Postgres, Feast's SQL registry, Redis)."""
    with prod_stack.client() as api:
        run = run_seed(api, MODEL, n=1000, output_path="s3://my-bucket/production/predictions")
    log.info("seed workflow on the production profile, seconds per step: %s", json.dumps(run.timings))
    return run


@pytest.fixture(scope="session")
def prometheus(prod_stack: ProdStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Prometheus scraping the Ray head's metrics export every second; its base URL."""
    port = free_port()
    svc = prometheus_service(tmp_path_factory.mktemp("prometheus"), port, [f"127.0.0.1:{prod_stack.metrics_port}"], prod_stack.env)
    svc.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        svc.stop()


def wait_until(check: object, timeout: float, what: str, interval: float = 1.0) -> object:
    """Poll ``check()`` until it returns something truthy; return it (``TimeoutError`` naming ``what``)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = check()  # type: ignore[operator]
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"{what} did not happen within {timeout:.0f}s (last: {last!r})")
