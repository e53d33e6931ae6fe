"""The workflow on a multi-node Ray cluster whose worker nodes share no disk with the head, nor with each other.

The head runs on this machine; each of the two worker nodes runs in a mount namespace of its own, with
private tmpfs mounts over ``/tmp``, ``/dev/shm`` and the head's ``ASGARD_HOME`` (``nodes.py``), joined to
the head over loopback. State lives on S3 and behind servers only: the session's S3 and MLflow servers,
and the gold catalog on Postgres (Debian's, as in ``tests/production``; the embedded SQLite catalog is a
file on one machine). The seed's five steps and a data-parallel fit must pass there, with the CPU work
on the workers. A head-local path (a file in the head's home or ``/tmp``, an embedded SQLite catalog)
cannot be read on a worker, and the platform says so loudly rather than opening an empty catalog. Where
the machine cannot make mount namespaces, the test says so and is an expected failure.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from asgard_ray.config import Settings
from asgard_ray.storage import exists
from tests.conftest import free_port
from tests.multinode.nodes import Node, namespace_support, start_head, start_worker, wait_port, wait_started
from tests.production.services import postgres_service

pytestmark = [
    pytest.mark.multinode,
    pytest.mark.timeout(1200),
]

REPO = Path(__file__).resolve().parents[2]


def _watch(driver: subprocess.Popen[str], nodes: list[Node], timeout: float) -> tuple[str, str]:
    """Wait for the driver; a node that exits meanwhile fails the test at once, with its log."""
    import threading

    result: dict[str, str] = {}
    reader = threading.Thread(target=lambda: result.update(zip(("out", "err"), driver.communicate(), strict=True)), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while reader.is_alive():
        dead = [n for n in nodes if n.proc.poll() is not None]
        if dead:
            driver.kill()
            raise AssertionError(f"Ray node {dead[0].name} exited with {dead[0].proc.returncode}: {dead[0].log_path.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            driver.kill()
            raise TimeoutError(f"the workflow did not finish within {timeout:.0f}s")
        reader.join(1.0)
    return result.get("out", ""), result.get("err", "")


def test_workflow_on_a_head_and_two_workers_that_share_no_disk(settings: Settings, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    from asgard_ray.local.stack import service_env
    from asgard_ray.runtime import ensure_token

    why_not = namespace_support()
    if why_not:
        pytest.xfail(f"worker nodes need private mount namespaces, and {why_not}")

    from asgard_ray.local.bootstrap import prepare_storage

    home = tmp_path / "mn_home"  # a home no other process shares: nothing may depend on a folder shared between nodes
    home.mkdir()
    # the gold catalog behind a server every node reaches: pyiceberg's SQL catalog on Postgres
    pg_root = Path(tempfile.mkdtemp(prefix="asgard-mn-pg-"))
    postgres = postgres_service(pg_root, free_port(), secrets.token_hex(16), dict(os.environ))

    def stop_postgres() -> None:
        postgres.service.stop()
        shutil.rmtree(pg_root, ignore_errors=True)

    request.addfinalizer(stop_postgres)
    postgres.service.start()
    postgres.create_database("gold")
    mn = settings.model_copy(
        update={
            "asgard_home": home,
            "feast_repo_path": home / "feast_repo",
            "asgard_monitoring_ack": "s3",
            "ray_auth_token_path": None,
            "asgard_gold_catalog": "sql",
            "asgard_gold_catalog_uri": postgres.url("gold"),
            "asgard_gold_warehouse": settings.s3_uri("warehouse-multinode"),
        }
    )
    prepare_storage(mn)  # the namespace and the demo gold table, in the Postgres catalog
    env = service_env(mn)
    env["ASGARD_TRAIN_CPUS_PER_WORKER"] = "0.5"  # a 1-CPU worker node keeps half a CPU for Ray Data
    env["ASGARD_MONITORING_ACK"] = "s3"  # no node-local write-ahead log: a cluster's default
    env["RAY_AUTH_TOKEN_PATH"] = str(ensure_token(home / "ray" / "auth_token"))  # the cluster's own token
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)  # this checkout's code on every node
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_AUTH_TOKEN", None)

    port, dash = free_port(), free_port()
    temp_dir = f"/tmp/asgard-mn-{port}"  # short: Unix socket paths are limited to ~107 bytes
    logs = tmp_path / "logs"
    hide = [home, Path("/tmp"), Path("/dev/shm")]
    keep = [REPO, Path(sys.prefix)]  # what a node's image carries: the code and the virtualenv
    nodes = [start_head(env, port, dash, free_port(), temp_dir, logs)]
    try:
        if not wait_started(nodes[0]):  # a second try, as for the workers below
            nodes = [start_head(env, port, dash, free_port(), temp_dir, logs)]
        wait_port(port, nodes[0].proc, nodes[0].log_path)
        wait_port(dash, nodes[0].proc, nodes[0].log_path)
        for i in (1, 2):  # one after the other, each given a second try: a loaded machine can miss Ray's fixed 30 s join wait
            for attempt in (1, 2):
                worker = start_worker(f"worker{i}", env, port, free_port(), hide, keep, logs)
                nodes.append(worker)
                if wait_started(worker):
                    break
                assert attempt == 1, f"worker{i} did not start twice: {worker.log_path.read_text()[-3000:]}"
                nodes.remove(worker)
                worker.stop()
        # the session's embedded SQLite catalog: a real head-local file of the platform's, for the probe
        sqlite_catalog = str(settings.gold_catalog_uri).removeprefix("sqlite:///")
        driver_env = {
            **env,
            "MN_ADDRESS": f"127.0.0.1:{port}",
            "RAY_ADDRESS": f"127.0.0.1:{port}",
            "MN_WORKERS": "2",
            "MN_HEAD_HOME": str(home),
            "MN_SQLITE_CATALOG": sqlite_catalog,
        }
        driver = subprocess.Popen(
            [sys.executable, "-m", "tests.multinode.workflow"], cwd=REPO, env=driver_env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            stdout, stderr = _watch(driver, nodes, timeout=1000)
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait(10)
    finally:
        for node in reversed(nodes):
            node.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)
    lines = [ln for ln in stdout.splitlines() if ln.startswith("MULTINODE_RESULT ")]
    assert driver.returncode == 0 and lines, stdout[-3000:] + stderr[-5000:]
    out = json.loads(lines[-1].removeprefix("MULTINODE_RESULT "))

    assert len(out["worker_node_ids"]) == 2
    # the worker nodes' disks are their own: a head-local file is not there, the workers' /tmp are distinct
    for node_id, seen in out["head_local_reads"].items():
        assert node_id in out["worker_node_ids"], node_id
        assert seen["paths"] and all(r.startswith("FileNotFoundError") for r in seen["paths"].values()), seen
        assert seen["catalog"].startswith("OperationalError"), seen  # sqlite3 on the head's catalog file
        assert seen["platform_catalog"].startswith("ServiceUnavailable") and "not on this node" in seen["platform_catalog"], seen
    assert all(r == "read" for r in out["head_reads"].values()), out["head_reads"]  # the same probe reads them on the head
    assert out["head_platform_catalog"].startswith("read"), out["head_platform_catalog"]
    assert len({out["tmp_ids"][n] for n in out["worker_node_ids"]} | {out["tmp_ids"][out["head_node_id"]]}) == 3, out["tmp_ids"]
    # CPU work (trials, Ray Data read/predict/write, drift aggregation) ran on worker nodes
    assert out["work_on_workers"], out
    trial_or_data = [
        n for n in out["work_on_workers"] if any(k in n.lower() for k in ("trainable", "map", "read", "write", "trial", "score", "actor"))
    ]
    assert trial_or_data, out["work_on_workers"]
    # data-parallel training: both workers trained, one on each worker node, on disjoint shards
    assert out["dp_mode"] == "distributed"
    assert sorted(out["dp_worker_nodes"]) == sorted(out["worker_node_ids"]), out
    # the prepared set is cut into one equal range per worker and each keeps its training side: no row dropped
    shards, total = out["dp_worker_rows"], out["dp_training_rows"]
    assert all(rows > 0 for rows in shards) and sum(shards) == total, out
    # the five steps: outputs live on S3 and behind the MLflow server, not in a local folder
    assert out["version"] and out["drift_status"] == "completed", out
    assert out["output_path"].startswith("s3://")
    assert exists(settings, out["output_path"].rstrip("/") + "/_manifest.json")
    assert out["artifact_uri"].startswith(("mlflow-artifacts:", "s3://"))
    assert not any(home.rglob("*.parquet"))
