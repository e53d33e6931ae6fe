"""The whole workflow on a local multi-node Ray cluster (head + 2 workers), over the HTTP API.

Run by ``test_multinode.py`` in its own process (one Ray per process). Settings come from the
environment (S3 and MLflow started by the test session). The head offers no CPU, so CPU work must
land on the worker nodes; the script prints one JSON line with what ran where.
"""

from __future__ import annotations

import json
import os
import sys

from fastapi.testclient import TestClient


def main() -> None:
    """Start the cluster, run the five steps, and report node ids of the work."""
    import ray
    from ray.cluster_utils import Cluster

    from asgard_ray.api.app import create_app
    from asgard_ray.config import Settings

    settings = Settings()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": True, "dashboard_port": int(os.environ["MN_DASHBOARD_PORT"])},
    )
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace=settings.ray_namespace,
             runtime_env={"env_vars": settings.worker_env()}, log_to_driver=False)
    worker_ids = {w.node_id for w in workers}
    head_id = cluster.head_node.node_id
    out: dict = {"worker_node_ids": sorted(worker_ids), "head_node_id": head_id}
    try:
        http = TestClient(create_app(settings), base_url="http://127.0.0.1")  # keyless API: loopback Host only

        def call(method: str, path: str, body: dict | None = None) -> dict:
            r = http.request(method, path, json=body)
            assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text[:2000]}"
            return r.json()

        call("POST", "/feast/features", {
            "name": "customer_features", "entities": ["customer_id"],
            "features": [{"name": "total_orders", "dtype": "int64"}, {"name": "avg_order_value", "dtype": "float64"},
                         {"name": "days_since_last_order", "dtype": "int64"}],
            "source": {"table_name": "customer_aggregates", "timestamp_field": "event_timestamp"},
        })
        trained = call("POST", "/mlops/models", {
            "experiment_name": "multinode", "model_name": "mn_churn", "framework": "lightgbm",
            "model_type": "classification",
            "data_source": {"feature_views": ["customer_features"], "entities": {"customer_id": list(range(1, 801))},
                            "target_column": "churned"},
            "hyperparameters": {"params": {"n_estimators": 20}, "search_space": {"num_leaves": {"type": "choice", "values": [7, 15]}},
                                "num_trials": 2, "metric": "roc_auc", "mode": "max"},
        })
        # data-parallel: one Ray Train worker per worker node (SPREAD, half a CPU each), shards from Ray Data
        dp = call("POST", "/mlops/models", {
            "experiment_name": "multinode", "model_name": "mn_churn_dp", "framework": "xgboost",
            "model_type": "classification",
            "data_source": {"feature_views": ["customer_features"], "entities": {"customer_id": list(range(1, 801))},
                            "target_column": "churned"},
            "hyperparameters": {"params": {"n_estimators": 20, "max_depth": 3}},
            "execution": {"mode": "distributed", "num_workers": 2},
        })
        out.update(dp_mode=dp["execution"]["mode"], dp_worker_nodes=dp["execution"]["worker_nodes"],
                   dp_worker_rows=dp["execution"]["worker_rows"], dp_training_rows=dp["training_rows"])
        reg = call("POST", "/mlops/registry", {"model_name": "mn_churn", "run_id": trained["run_id"]})
        batch = call("POST", "/mlops/serve/batch", {
            "model_name": "mn_churn", "model_version": str(reg["version"]), "feature_views": ["customer_features"],
            "entities_df": {"customer_id": list(range(1, 501))},
            "output_path": settings.s3_uri("multinode", "predictions"), "overwrite": True,
        })
        drift = call("POST", "/mlops/monitoring/compute", {"job_id": batch["job_id"]})
        out.update(run_id=trained["run_id"], artifact_uri=trained.get("artifact_uri"), version=reg["version"],
                   job_id=batch["job_id"], output_path=batch.get("output_path"), drift_status=drift.get("status"))

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
    finally:
        ray.shutdown()
        cluster.shutdown()
    print("MULTINODE_RESULT " + json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
