"""The bind rule reads Serve's real ``http_options``: a controller whose proxies would listen beyond loopback is refused.

The check runs in a fresh local Ray (in a subprocess, so it shares nothing with the suite's stack) whose
Serve controller is started with ``host: 0.0.0.0`` and no proxy (``proxy_location: Disabled``), so nothing
actually listens beyond loopback while the controller still reports the configured host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SCRIPT = r"""
import json, sys
import ray
from ray import serve
from asgard_ray.api.security import check_serve_bind, serve_http_host
from asgard_ray.config import Settings
from asgard_ray.errors import InvalidRequest

out = {"before_ray": serve_http_host()}
ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
try:
    out["no_controller"] = serve_http_host()
    serve.start(proxy_location="Disabled", http_options={"host": "0.0.0.0", "port": int(sys.argv[1])})
    out["real_host"] = serve_http_host()
    home = sys.argv[2]
    try:
        check_serve_bind(Settings(asgard_home=home, asgard_api_host="127.0.0.1"))
        out["keyless"] = "allowed"
    except InvalidRequest as exc:
        out["keyless"] = exc.message
    try:
        from asgard_ray.api.serve import build_app
        build_app()
        out["build_app"] = "built"
    except InvalidRequest as exc:
        out["build_app"] = exc.message
    check_serve_bind(Settings(asgard_home=home, asgard_api_host="127.0.0.1", asgard_api_key="k" * 24))
    out["with_key"] = "allowed"
finally:
    serve.shutdown()
    ray.shutdown()
print("RESULT " + json.dumps(out))
"""


def test_controller_bound_beyond_loopback_is_refused_without_a_key(tmp_path: Path) -> None:
    from tests.conftest import free_port

    # the session's own Ray token (RAY_AUTH_*) is kept: the fresh Ray never touches ~/.ray
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASGARD_", "RAY_ADDRESS"))}
    env.update({"ASGARD_HOME": str(tmp_path), "ASGARD_API_HOST": "127.0.0.1", "HOME": str(tmp_path)})
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(free_port()), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["before_ray"] is None and out["no_controller"] is None
    assert out["real_host"] == "0.0.0.0"
    # ASGARD_API_HOST says loopback; the controller's http_options decide
    assert "'0.0.0.0'" in out["keyless"] and "ASGARD_API_KEY" in out["keyless"]
    assert "'0.0.0.0'" in out["build_app"]  # what `serve deploy` runs in the controller's build task
    assert out["with_key"] == "allowed"
