"""The whole workflow on a multi-node Ray cluster (head + 2 workers that share no disk), over the HTTP API.

Run by ``test_multinode.py`` in its own process (one Ray per process), as the driver on the head's
machine, once the test has started the nodes (``nodes.py``) and set ``MN_ADDRESS``. Settings come from
the environment (S3 and MLflow started by the test session). The head offers no CPU, so CPU work must
land on the worker nodes. After the five steps, a probe on every node tries to read files that exist
only on the head's disk. The script prints one JSON line with what ran where and what each node saw.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient


def probe(paths: list[str], catalog: str, settings: Any) -> dict[str, Any]:
    """On one node: read each path, open a SQLite catalog file with sqlite3 and with the platform; name this node's /tmp."""
    seen: dict[str, str] = {}
    for path in paths:
        try:
            Path(path).read_text()
            seen[path] = "read"
        except OSError as exc:
            seen[path] = f"{type(exc).__name__}: {exc}"
    try:
        sqlite3.connect(f"file:{catalog}?mode=ro", uri=True).execute("SELECT count(*) FROM sqlite_master").fetchone()
        opened = "read"
    except sqlite3.Error as exc:
        opened = f"{type(exc).__name__}: {exc}"
    from asgard_ray.gold import gold_catalog

    sqlite_settings = settings.model_copy(update={"asgard_gold_catalog": "sql", "asgard_gold_catalog_uri": f"sqlite:///{catalog}"})
    try:
        tables = gold_catalog(sqlite_settings).list_tables(settings.gold_schema)
        platform_catalog = f"read {len(tables)} tables"
    except Exception as exc:
        platform_catalog = f"{type(exc).__name__}: {exc}"
    st = os.stat(tempfile.gettempdir())
    return {"paths": seen, "catalog": opened, "platform_catalog": platform_catalog, "tmp_id": f"{st.st_dev}:{st.st_ino}"}


def _nodes(expected_workers: int, timeout: float = 240) -> tuple[str, set[str]]:
    """The head's node id and the workers' once all have joined."""
    import ray

    deadline = time.monotonic() + timeout
    while True:
        alive = [n for n in ray.nodes() if n["Alive"]]
        head = [n["NodeID"] for n in alive if "node:__internal_head__" in n["Resources"]]
        workers = {n["NodeID"] for n in alive if "node:__internal_head__" not in n["Resources"]}
        if head and len(workers) >= expected_workers:
            return head[0], workers
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(workers)} of {expected_workers} worker nodes joined within {timeout}s")
        time.sleep(0.5)


def main() -> None:
    """Start the cluster, run the five steps, and report node ids of the work."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from asgard_ray.api.app import create_app
    from asgard_ray.config import Settings

    settings = Settings()
    ray.init(
        address=os.environ["MN_ADDRESS"],
        namespace=settings.ray_namespace,
        runtime_env={"env_vars": settings.worker_env()},
        log_to_driver=False,
    )
    head_id, worker_ids = _nodes(int(os.environ.get("MN_WORKERS", "2")))
    out: dict = {"worker_node_ids": sorted(worker_ids), "head_node_id": head_id}
    try:
        http = TestClient(create_app(settings), base_url="http://127.0.0.1")  # keyless API: loopback Host only

        def call(method: str, path: str, body: dict | None = None) -> dict:
            r = http.request(method, path, json=body)
            assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text[:2000]}"
            return r.json()

        call(
            "POST",
            "/feast/features",
            {
                "name": "customer_features",
                "entities": ["customer_id"],
                "features": [
                    {"name": "total_orders", "dtype": "int64"},
                    {"name": "avg_order_value", "dtype": "float64"},
                    {"name": "days_since_last_order", "dtype": "int64"},
                ],
                "source": {"table_name": "customer_aggregates", "timestamp_field": "event_timestamp"},
            },
        )
        trained = call(
            "POST",
            "/mlops/models",
            {
                "experiment_name": "multinode",
                "model_name": "mn_churn",
                "framework": "lightgbm",
                "model_type": "classification",
                "data_source": {
                    "feature_views": ["customer_features"],
                    "entities": {"customer_id": list(range(1, 801))},
                    "target_column": "churned",
                },
                "hyperparameters": {
                    "params": {"n_estimators": 20},
                    "search_space": {"num_leaves": {"type": "choice", "values": [7, 15]}},
                    "num_trials": 2,
                    "metric": "roc_auc",
                    "mode": "max",
                },
            },
        )
        # data-parallel: one Ray Train worker per worker node (SPREAD, half a CPU each), shards from Ray Data
        dp = call(
            "POST",
            "/mlops/models",
            {
                "experiment_name": "multinode",
                "model_name": "mn_churn_dp",
                "framework": "xgboost",
                "model_type": "classification",
                "data_source": {
                    "feature_views": ["customer_features"],
                    "entities": {"customer_id": list(range(1, 801))},
                    "target_column": "churned",
                },
                "hyperparameters": {"params": {"n_estimators": 20, "max_depth": 3}},
                "execution": {"mode": "distributed", "num_workers": 2},
            },
        )
        out.update(
            dp_mode=dp["execution"]["mode"],
            dp_worker_nodes=dp["execution"]["worker_nodes"],
            dp_worker_rows=dp["execution"]["worker_rows"],
            dp_training_rows=dp["training_rows"],
        )
        reg = call("POST", "/mlops/registry", {"model_name": "mn_churn", "run_id": trained["run_id"]})
        batch = call(
            "POST",
            "/mlops/serve/batch",
            {
                "model_name": "mn_churn",
                "model_version": str(reg["version"]),
                "feature_views": ["customer_features"],
                "entities_df": {"customer_id": list(range(1, 501))},
                "output_path": settings.s3_uri("multinode", "predictions"),
                "overwrite": True,
            },
        )
        drift = call("POST", "/mlops/monitoring/compute", {"job_id": batch["job_id"], "wait_s": 300})
        out.update(
            run_id=trained["run_id"],
            artifact_uri=trained.get("artifact_uri"),
            version=reg["version"],
            job_id=batch["job_id"],
            output_path=batch.get("output_path"),
            drift_status=drift.get("status"),
        )

        from ray.util.state import list_actors, list_tasks

        tasks = list_tasks(limit=10_000, raise_on_missing_output=False, detail=True)
        actors = list_actors(limit=10_000, raise_on_missing_output=False, detail=True)
        nodes_by_name: dict[str, list[str]] = {}
        for t in tasks:
            if t.node_id:
                nodes_by_name.setdefault(t.name, []).append(t.node_id)
        for a in actors:
            if a.node_id:
                nodes_by_name.setdefault(f"actor:{a.class_name}", []).append(a.node_id)
        out["work_on_workers"] = sorted(n for n, ids in nodes_by_name.items() if set(ids) & worker_ids)
        out["work_on_head"] = sorted(n for n, ids in nodes_by_name.items() if head_id in ids)

        # files that exist only on the head's disk: in its home, in its /tmp, and the gold catalog
        head_files = [
            Path(os.environ["MN_HEAD_HOME"]) / "head-only.txt",
            Path(tempfile.gettempdir()) / f"asgard-head-only-{os.getpid()}.txt",
        ]
        for f in head_files:
            f.write_text("only on the head")
        catalog = os.environ["MN_SQLITE_CATALOG"]
        remote = ray.remote(num_cpus=0, max_retries=0)(probe)
        try:
            seen = {
                node: ray.get(
                    remote.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(
                        [str(f) for f in head_files], catalog, settings
                    ),
                    timeout=120,
                )
                for node in [head_id, *sorted(worker_ids)]
            }
        finally:
            for f in head_files:
                f.unlink(missing_ok=True)
        out["head_reads"] = {**seen[head_id]["paths"], "catalog": seen[head_id]["catalog"]}
        out["head_platform_catalog"] = seen[head_id]["platform_catalog"]
        out["head_local_reads"] = {n: seen[n] for n in worker_ids}
        out["tmp_ids"] = {n: s["tmp_id"] for n, s in seen.items()}
    finally:
        ray.shutdown()
    print("MULTINODE_RESULT " + json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
