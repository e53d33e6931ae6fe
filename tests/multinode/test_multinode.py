"""The workflow on a local multi-node cluster: work lands on worker nodes; all state is on S3/MLflow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from asgard_ray.config import Settings
from asgard_ray.storage import exists
from tests.conftest import free_port

pytestmark = [
    pytest.mark.multinode,
]

REPO = Path(__file__).resolve().parents[2]


def test_workflow_on_head_and_two_workers(settings: Settings, tmp_path: Path) -> None:
    from asgard_ray.local.stack import service_env
    from asgard_ray.runtime import ensure_token

    # a home no other process shares: nothing may depend on a local folder shared between nodes
    env = service_env(settings.model_copy(update={"asgard_home": tmp_path / "mn_home", "feast_repo_path": tmp_path / "mn_feast"}))
    env["MN_DASHBOARD_PORT"] = str(free_port())
    # the gold catalog is the session's (its SQLite file on this machine, the head); workers read pinned
    # snapshots through S3 alone (GoldTable.read opens the pinned metadata file, not the catalog)
    env["ASGARD_GOLD_CATALOG_URI"] = str(settings.gold_catalog_uri)
    env["ASGARD_TRAIN_CPUS_PER_WORKER"] = "0.5"  # a 1-CPU worker node keeps half a CPU for Ray Data
    ensure_token(Path(env["RAY_AUTH_TOKEN_PATH"]))  # the cluster this test starts has a token of its own
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "tests.multinode.workflow"], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=900, check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("MULTINODE_RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-5000:]
    out = json.loads(lines[-1].removeprefix("MULTINODE_RESULT "))

    assert len(out["worker_node_ids"]) == 2
    # CPU work (trials, Ray Data read/predict/write, drift aggregation) ran on worker nodes
    assert out["work_on_workers"], out
    trial_or_data = [n for n in out["work_on_workers"] if any(k in n.lower() for k in ("trainable", "map", "read", "write", "trial", "score", "actor"))]
    assert trial_or_data, out["work_on_workers"]
    # data-parallel training: both Ray Train workers trained, one on each worker node, on disjoint shards
    assert out["dp_mode"] == "distributed"
    assert sorted(out["dp_worker_nodes"]) == sorted(out["worker_node_ids"]), out
    # Ray Train splits the dataset with streaming_split(n, equal=True): equal shards, so up to n-1 leftover rows
    # are dropped (ci2: 643 training rows, 321 + 321 trained)
    shards, total = out["dp_worker_rows"], out["dp_training_rows"]
    assert all(rows > 0 for rows in shards) and total - (len(shards) - 1) <= sum(shards) <= total, out
    assert max(shards) - min(shards) <= 1, out
    # outputs live on S3 and behind the MLflow server, not in a local folder
    assert out["output_path"].startswith("s3://")
    assert exists(settings, out["output_path"].rstrip("/") + "/_manifest.json")
    assert out["artifact_uri"].startswith(("mlflow-artifacts:", "s3://"))
    assert not any((tmp_path / "mn_home").rglob("*.parquet"))
