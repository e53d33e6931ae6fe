"""Shared fixtures: a real S3 server, MLflow server, Ray and Feast repo, each started once per session.

Integration tests take ``settings`` (which starts S3 and MLflow) and ``ray_session``; unit tests take
none of them. Every service binds 127.0.0.1 on a free port, so several test runs can share a machine.
``stack`` is one private embedded stack (``asgard up`` on free ports, its own home and token), shared
by the e2e, security and fault suites; a test that kills part of it brings it back with ``asgard up``.

The suite never reads the user's ``~/.ray``: ``pytest_configure`` points Ray at a token of its own
before anything imports Ray, and each stack the suite starts gets its own token under its home.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from asgard_ray.config import Settings
from asgard_ray.features.specs import SEED_EXAMPLE

_SESSION_HOME = Path(tempfile.mkdtemp(prefix="asgard-tests-"))


def pytest_configure(config: pytest.Config) -> None:
    """Give the test process its own Ray token, so ``ray.init`` never reads or writes ``~/.ray``."""
    from asgard_ray.runtime import ensure_token

    token = ensure_token(_SESSION_HOME / "ray" / "auth_token")
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(token)
    os.environ.pop("RAY_AUTH_TOKEN", None)


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
    return isolated_settings(
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
        [
            mlflow_bin,
            "server",
            "--backend-store-uri",
            f"sqlite:///{db}",
            "--artifacts-destination",
            base_settings.s3_uri("mlflow-artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            port,
            "--workers",
            "1",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_http(f"{uri}/health", timeout=300)  # a loaded machine starts MLflow slowly
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


# --- the live embedded stack (``asgard up``), shared by tests/e2e, tests/security and tests/faults ---------


def asgard(env: dict[str, str], *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    """Run the ``asgard`` CLI in a subprocess with ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "asgard_ray.cli", *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def stack_environment(home: Path, **extra: str) -> dict[str, str]:
    """Environment of a private embedded stack in ``home``: free ports, an empty HOME, nothing from ``~/.ray``."""
    user_home = home / "user_home"
    user_home.mkdir(parents=True, exist_ok=True)
    inherited = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("ASGARD_", "MLFLOW_", "S3_", "FEAST_", "AWS_", "RAY_AUTH_TOKEN"))
    }  # fmt: skip
    return {
        **inherited,
        "HOME": str(user_home),
        "ASGARD_HOME": str(home / "asgard"),
        "ASGARD_S3_PORT": str(free_port()),
        "ASGARD_MLFLOW_PORT": str(free_port()),
        "ASGARD_RAY_PORT": str(free_port()),
        "ASGARD_DASHBOARD_PORT": str(free_port()),
        "ASGARD_API_PORT": str(free_port()),
        "RAY_AUTH_MODE": "token",
        **extra,
    }


@pytest.fixture(scope="session")
def stack_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Environment of the suite's private embedded stack (started by ``stack``), stopped at the end."""
    env = stack_environment(tmp_path_factory.mktemp("stack"))
    yield env
    asgard(env, "down", timeout=180)


@pytest.fixture(scope="session")
def stack(stack_env: dict[str, str]) -> dict[str, str]:
    """The private stack, up."""
    result = asgard(stack_env, "up")
    assert result.returncode == 0, result.stdout + result.stderr
    return stack_env


def api_url(env: dict[str, str]) -> str:
    """Base URL of the stack's control API."""
    return f"http://127.0.0.1:{env['ASGARD_API_PORT']}"


def dashboard_url(env: dict[str, str]) -> str:
    """The stack's Ray dashboard / Jobs API."""
    return f"http://127.0.0.1:{env['ASGARD_DASHBOARD_PORT']}"


def stack_settings(env: dict[str, str]) -> Settings:
    """The ``Settings`` a process with exactly ``env`` builds (nothing from this process's environment).

    Session fixtures export the integration servers' ``S3_ENDPOINT_URL`` and friends into
    ``os.environ``; a plain ``Settings(...)`` here would read those and talk to the wrong stack.
    """
    from unittest import mock

    with mock.patch.dict(os.environ, env, clear=True):
        return Settings(_env_file=None)  # type: ignore[call-arg]


def isolated_settings(**fields: Any) -> Settings:
    """``Settings(**fields)`` that reads none of this process's platform variables.

    Fixtures export a stack's ``worker_env()`` (its S3 endpoint, gold catalog, MLflow URI, ...) into
    ``os.environ``; a fixture building *another* stack's settings from a few fields would otherwise
    inherit the rest (e.g. the first stack's Iceberg catalog, whose metadata is on the other S3).
    """
    from unittest import mock

    names = {name.upper() for name in Settings.model_fields}
    env = {key: value for key, value in os.environ.items() if key.upper() not in names}
    with mock.patch.dict(os.environ, env, clear=True):
        return Settings(_env_file=None, **fields)  # type: ignore[call-arg]


@contextlib.contextmanager
def mlflow_uris(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API (tracking and registry) at ``uri`` for a block, then put back exactly what was there.

    ``mlflow.set_tracking_uri`` also writes ``MLFLOW_TRACKING_URI`` into the environment, and setting back the
    value ``get_*_uri`` returned would pin a default (``sqlite:///mlflow.db`` in the working folder) that was
    never set: later tests would then register their models there. So the module globals are saved and restored.
    """
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    saved = (tracking_utils._tracking_uri, registry_utils._registry_uri, os.environ.get("MLFLOW_TRACKING_URI"))
    tracking_utils._tracking_uri, registry_utils._registry_uri = uri, uri
    try:
        yield
    finally:
        tracking_utils._tracking_uri, registry_utils._registry_uri = saved[0], saved[1]
        if saved[2] is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved[2]


def token_path(env: dict[str, str]) -> Path:
    """The stack's Ray auth token file."""
    return Path(env["ASGARD_HOME"]) / "ray" / "auth_token"


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the session's token folder."""
    shutil.rmtree(_SESSION_HOME, ignore_errors=True)
