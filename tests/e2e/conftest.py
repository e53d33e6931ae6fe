"""The embedded stack, started once for the e2e session with its own home and free ports."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.conftest import free_port


def asgard(env: dict[str, str], *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    """Run the ``asgard`` CLI in a subprocess with ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "asgard_ray.cli", *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="session")
def stack_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Environment of a private embedded stack (not started here: ``stack`` starts it)."""
    home = tmp_path_factory.mktemp("stack_home")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ASGARD_", "MLFLOW_", "S3_", "FEAST_", "AWS_ENDPOINT"))},
        "ASGARD_HOME": str(home),
        "ASGARD_S3_PORT": str(free_port()),
        "ASGARD_MLFLOW_PORT": str(free_port()),
        "ASGARD_RAY_PORT": str(free_port()),
        "ASGARD_DASHBOARD_PORT": str(free_port()),
        "ASGARD_API_PORT": str(free_port()),
        "RAY_AUTH_MODE": "token",
    }
    yield env
    asgard(env, "down", timeout=120)


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
