"""Shared fixtures: a real S3 server, MLflow server, Ray and Feast repo, each started once per session.

Integration tests take ``settings`` (which starts S3 and MLflow) and ``ray_session``; unit tests take
none of them. Every service binds 127.0.0.1 on a free port, so several test runs can share a machine.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from asgard_ray.config import Settings
from asgard_ray.features.specs import SEED_EXAMPLE


def free_port() -> int:
    """A TCP port that is free right now on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - loopback
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's S3 server on a free loopback port (in-process threads)."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="session")
def base_settings(s3_server: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings pointing at the session's S3 server and a temporary home (MLflow not started)."""
    home = tmp_path_factory.mktemp("asgard_home")
    port = int(s3_server.rsplit(":", 1)[1])
    return Settings(
        asgard_home=home,
        s3_endpoint_url=s3_server,
        asgard_s3_port=port,
        feast_repo_path=home / "feast_repo",
        mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}",
    )


@pytest.fixture(scope="session")
def mlflow_server(base_settings: Settings) -> Iterator[str]:
    """A real ``mlflow server`` with a SQLite store and artifacts proxied to the S3 server."""
    uri = base_settings.tracking_uri
    port = uri.rsplit(":", 1)[1]
    env = {**os.environ, **base_settings.worker_env()}
    db = base_settings.asgard_home / "mlflow.db"
    from asgard_ray.storage import ensure_buckets

    ensure_buckets(base_settings, [base_settings.s3_bucket])
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    log = open(base_settings.asgard_home / "mlflow.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [mlflow_bin, "server", "--backend-store-uri", f"sqlite:///{db}",
         "--artifacts-destination", base_settings.s3_uri("mlflow-artifacts"),
         "--host", "127.0.0.1", "--port", port, "--workers", "1"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        wait_http(f"{uri}/health")
        yield uri
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def settings(base_settings: Settings, mlflow_server: str) -> Iterator[Settings]:
    """Settings with S3, MLflow and the demo gold table ready; the process env points at them too."""
    from asgard_ray.local.bootstrap import prepare_feast_repo, prepare_storage

    saved = dict(os.environ)
    os.environ.update(base_settings.worker_env())
    prepare_storage(base_settings)
    prepare_feast_repo(base_settings)
    yield base_settings
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def ray_session(settings: Settings) -> Iterator[None]:
    """One local Ray for the session (2 CPUs), with workers that reach S3 and MLflow."""
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        namespace=settings.ray_namespace,
        runtime_env={"env_vars": settings.worker_env()},
        log_to_driver=False,
    )
    yield
    ray.shutdown()


SEED_FEATURE_SPEC = SEED_EXAMPLE


@pytest.fixture(scope="session")
def customer_features(settings: Settings, ray_session: None) -> str:
    """The seed's feature view, registered in the session's Feast registry."""
    from asgard_ray.features import FeatureRegistry, FeatureViewSpec

    FeatureRegistry(settings).register(FeatureViewSpec.model_validate(SEED_FEATURE_SPEC))
    return SEED_FEATURE_SPEC["name"]
