"""What the benches share: a private S3 server, an MLflow server, platform settings and a local Ray.

Each bench process starts its own, on free loopback ports under a temporary home, with a Ray token
of its own (never ``~/.ray``), and stops them at exit. Nothing here is imported by the platform.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def free_port() -> int:
    """A TCP port free right now on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve_s3(port: int) -> None:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    while True:
        time.sleep(3600)


def _wait_http(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - loopback
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def start_stack(num_cpus: int, *, mlflow: bool = True, ray: bool = True) -> Any:
    """S3 (moto, in a child process), optionally an MLflow server and a local Ray; return the ``Settings``."""
    from asgard_ray.config import Settings
    from asgard_ray.runtime import prepare_auth
    from asgard_ray.storage import ensure_buckets

    home = Path(tempfile.mkdtemp(prefix="asgard-bench-"))
    s3_port = free_port()
    s3 = multiprocessing.get_context("spawn").Process(target=_serve_s3, args=(s3_port,), daemon=True)
    s3.start()
    atexit.register(s3.terminate)
    mlflow_port = free_port()
    settings = Settings(
        asgard_home=home,
        s3_endpoint_url=f"http://127.0.0.1:{s3_port}",
        asgard_s3_port=s3_port,
        mlflow_tracking_uri=f"http://127.0.0.1:{mlflow_port}",
        asgard_mlflow_port=mlflow_port,
        asgard_output_buckets=["asgard"],
    )
    _wait_http(f"http://127.0.0.1:{s3_port}/moto-api/")
    ensure_buckets(settings, [settings.s3_bucket])
    env = settings.worker_env()
    os.environ.update(env)
    if mlflow:
        log = open(home / "mlflow.log", "wb")  # noqa: SIM115 - lives as long as the server
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "mlflow"),
                "server",
                "--backend-store-uri",
                f"sqlite:///{home / 'mlflow.db'}",
                "--artifacts-destination",
                settings.state_uri("mlflow_artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(mlflow_port),
                "--workers",
                "1",
            ],
            # as `asgard up` runs it: without MLflow 3's GenAI job runners (processes that import the whole server)
            env={**os.environ, **env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        atexit.register(proc.terminate)
        _wait_http(f"http://127.0.0.1:{mlflow_port}/health", timeout=300)
    prepare_auth(settings, create=True)  # a token of its own under the bench's home, before Ray is imported
    if ray:
        import ray as ray_mod

        ray_mod.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            namespace=settings.ray_namespace,
            runtime_env={"env_vars": env},
        )
        atexit.register(ray_mod.shutdown)
    return settings


class RssSampler:
    """Peak RSS of this process above its level at the start, sampled on a thread every 50 ms."""

    def __init__(self, every_s: float = 0.05) -> None:
        import threading

        import psutil

        self.proc = psutil.Process()
        self.base = self.peak = self.proc.memory_info().rss
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self._stop.wait(self.every_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def mb(self) -> int:
        """Peak above the start, in MiB."""
        return round((self.peak - self.base) / 2**20)


def verdict(ok: bool) -> str:
    """``met`` or ``NOT met``."""
    return "met" if ok else "NOT met"


def stack_environment(root: Path) -> dict[str, str]:
    """A private embedded stack's environment (as tests/conftest.py builds it): free ports, an empty HOME."""
    user_home = root / "user_home"
    user_home.mkdir(parents=True, exist_ok=True)
    prefixes = ("ASGARD_", "MLFLOW_", "S3_", "FEAST_", "AWS_", "RAY_AUTH_TOKEN")
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    ports = {name: str(free_port()) for name in ("S3", "MLFLOW", "RAY", "DASHBOARD", "API")}
    return {
        **inherited,
        "HOME": str(user_home),
        "ASGARD_HOME": str(root / "asgard"),
        **{f"ASGARD_{name}_PORT": port for name, port in ports.items()},
        "RAY_AUTH_MODE": "token",
    }


def asgard(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run the ``asgard`` CLI with ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "asgard_ray.cli", *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


class PrivateStack:
    """``asgard up`` in a temporary home on free ports for the length of a ``with`` block (``asgard down`` after)."""

    def __init__(self, **extra_env: str) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="asgard-bench-stack-", ignore_cleanup_errors=True)
        self.env = {**stack_environment(Path(self.tmp.name)), **extra_env}
        self.api = f"http://127.0.0.1:{self.env['ASGARD_API_PORT']}"
        self.up_s = 0.0

    def __enter__(self) -> PrivateStack:
        start = time.perf_counter()
        up = asgard(self.env, "up")
        self.up_s = time.perf_counter() - start
        if up.returncode != 0:
            asgard(self.env, "down", timeout=300)
            raise RuntimeError(f"asgard up failed ({up.returncode}):\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}")
        return self

    def __exit__(self, *exc: object) -> None:
        asgard(self.env, "down", timeout=300)
        self.tmp.cleanup()


def seed_model(api: str, name: str = "bench_churn") -> str:
    """Register the seed's feature view, train and register a small model over HTTP; return its version."""
    import httpx

    from asgard_ray.features.specs import SEED_EXAMPLE

    with httpx.Client(base_url=api, timeout=600) as http:
        r = http.post("/feast/features", json=SEED_EXAMPLE)
        assert r.status_code in (200, 201), r.text
        body = {
            "experiment_name": "bench",
            "model_name": name,
            "framework": "lightgbm",
            "model_type": "classification",
            "data_source": {
                "feature_views": ["customer_features"],
                "entities": {"customer_id": list(range(1, 201))},
                "target_column": "churned",
            },
            "hyperparameters": {"params": {"n_estimators": 20, "min_child_samples": 5}},
        }
        r = http.post("/mlops/models", json=body)
        assert r.status_code == 200, r.text
        r = http.post("/mlops/registry", json={"model_name": name, "run_id": r.json()["run_id"]})
        assert r.status_code in (200, 201), r.text
        return str(r.json()["version"])
