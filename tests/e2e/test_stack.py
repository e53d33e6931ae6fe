"""``asgard up`` / ``down`` / ``up`` on its own home and ports; step 1 of the seed over HTTP survives it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import SEED_FEATURE_SPEC
from tests.e2e.conftest import api_url, asgard

pytestmark = pytest.mark.e2e


def test_up_register_down_up_keeps_state(stack: dict[str, str]) -> None:
    assert (Path(stack["ASGARD_HOME"]) / "run" / "ray.pid").exists()
    again = asgard(stack, "up")  # idempotent: everything is healthy, nothing new starts
    assert again.returncode == 0, again.stderr
    pids_before = (Path(stack["ASGARD_HOME"]) / "run" / "ray.pid").read_text()

    api = api_url(stack)
    r = httpx.post(f"{api}/feast/features", json=SEED_FEATURE_SPEC, timeout=120)
    assert r.status_code in (200, 201), r.text
    assert r.json()["name"] == "customer_features"
    status = httpx.get(f"{api}/mlops/status", timeout=60).json()
    assert {c["name"]: c["healthy"] for c in status["components"]} == {"ray": True, "mlflow": True, "s3": True, "feast": True, "monitoring": True}
    assert pids_before == (Path(stack["ASGARD_HOME"]) / "run" / "ray.pid").read_text()

    stopped = asgard(stack, "down", timeout=120)
    assert stopped.returncode == 0
    assert "ray" in stopped.stdout and "s3" in stopped.stdout
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{api}/mlops/health", timeout=2)

    second = asgard(stack, "up")
    assert second.returncode == 0, second.stdout + second.stderr
    listed = httpx.get(f"{api}/feast/features", timeout=60).json()
    assert "customer_features" in [v["name"] for v in listed["feature_views"]]
    same = httpx.post(f"{api}/feast/features", json=SEED_FEATURE_SPEC, timeout=120)
    assert same.status_code == 200 and same.json()["status"] == "unchanged"
    assert asgard(stack, "status").returncode == 0
