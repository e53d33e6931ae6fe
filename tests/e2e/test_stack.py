"""``asgard up`` / ``down`` / ``up`` on its own home and ports; step 1 of the seed over HTTP survives it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import SEED_FEATURE_SPEC, free_port

pytestmark = pytest.mark.e2e


def _asgard(env: dict[str, str], *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asgard_ray.cli", *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("stack_home")
    ray_port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ASGARD_", "MLFLOW_", "S3_", "FEAST_", "AWS_ENDPOINT"))},
        "ASGARD_HOME": str(home),
        "ASGARD_S3_PORT": str(free_port()),
        "ASGARD_MLFLOW_PORT": str(free_port()),
        "ASGARD_RAY_PORT": str(ray_port),
        "ASGARD_DASHBOARD_PORT": str(free_port()),
        "ASGARD_API_PORT": str(free_port()),
    }
    yield env
    _asgard(env, "down", timeout=120)


def _api(env: dict[str, str]) -> str:
    return f"http://127.0.0.1:{env['ASGARD_API_PORT']}"


def test_up_register_down_up_keeps_state(stack_env: dict[str, str]) -> None:
    first = _asgard(stack_env, "up")
    assert first.returncode == 0, first.stdout + first.stderr
    assert (Path(stack_env["ASGARD_HOME"]) / "run" / "ray.pid").exists()

    again = _asgard(stack_env, "up")  # idempotent: nothing new is started
    assert again.returncode == 0, again.stderr

    r = httpx.post(f"{_api(stack_env)}/feast/features", json=SEED_FEATURE_SPEC, timeout=120)
    assert r.status_code in (200, 201), r.text
    assert r.json()["name"] == "customer_features"
    status = httpx.get(f"{_api(stack_env)}/mlops/status", timeout=60).json()
    assert {c["name"]: c["healthy"] for c in status["components"]} == {"ray": True, "mlflow": True, "s3": True, "feast": True}

    stopped = _asgard(stack_env, "down", timeout=120)
    assert stopped.returncode == 0
    assert "ray" in stopped.stdout and "s3" in stopped.stdout
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{_api(stack_env)}/mlops/health", timeout=2)

    second = _asgard(stack_env, "up")
    assert second.returncode == 0, second.stdout + second.stderr
    listed = httpx.get(f"{_api(stack_env)}/feast/features", timeout=60).json()
    assert [v["name"] for v in listed["feature_views"]] == ["customer_features"]
    # re-registering the identical spec after a restart is still a no-op
    same = httpx.post(f"{_api(stack_env)}/feast/features", json=SEED_FEATURE_SPEC, timeout=120)
    assert same.status_code == 200 and same.json()["status"] == "unchanged"
    assert json.loads(_asgard(stack_env, "status").returncode.__str__()) == 0
