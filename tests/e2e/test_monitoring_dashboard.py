"""The monitoring page in headless Chromium: served by uvicorn on loopback, charts drawn with data."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
import uvicorn

from asgard_ray.api.app import create_app
from asgard_ray.config import Settings
from tests.conftest import free_port

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def server(settings: Settings, ray_session: None) -> str:
    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def dump_dom(url: str, tmp_path: Path) -> str:
    out = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'chromium'}", "--virtual-time-budget=5000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120, check=True,
    )
    return out.stdout


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (apt-get install -y chromium)")
def test_dashboard_renders_charts_with_data_in_chromium(server: str, tmp_path: Path) -> None:
    model = f"dash_model_{uuid.uuid4().hex[:6]}"
    with httpx.Client(base_url=server, timeout=60) as http:
        for i, psi in enumerate([0.02, 0.05, 0.31]):
            r = http.post("/mlops/monitoring", json={"model_name": model, "model_version": "1", "metric_type": "feature_drift",
                                                     "metrics": {"total_orders.psi": psi, "total_orders.ks_pvalue": 0.4 - i * 0.19}})
            assert r.status_code == 200, r.text
        http.post("/mlops/monitoring", json={"model_name": model, "model_version": "2", "metric_type": "model_performance",
                                             "metrics": {"accuracy": 0.82}})
    dom = dump_dom(f"{server}/mlops/monitoring/dashboard?model_name={model}", tmp_path)
    assert 'data-rendered-charts="2"' in dom  # one chart per model version and metric type
    charts = re.findall(r'<svg[^>]*class="chart"[^>]*data-model="' + model + r'"[^>]*>(.*?)</svg>', dom, flags=re.S)
    assert len(charts) == 2
    drift = next(c for c in charts if 'data-metric="total_orders.psi"' in c)
    path = re.search(r'<path d="(M[^"]+)"[^>]*data-metric="total_orders.psi"', drift)
    assert path and path.group(1).count("L") == 2  # three points joined
    assert drift.count('class="alert"') == 2  # psi 0.31 and the p-value 0.02 are alerts, drawn red
    assert dom.count('class="point"') >= 5
    assert "total_orders.psi drift detected: 0.310" in dom  # the alerts table
