"""The hostile-input suite's world: the live stack, sentinels that must never change, and a real model.

Sentinels (snapshotted before and after every hostile request by ``assert_unchanged``):

- a host folder with ``a.txt``, ``sub/b.txt`` and a Parquet file with private columns;
- objects under ``s3://my-bucket/sentinel/`` and in a bucket the platform was never told about;
- the MLflow model versions;
- the monitoring records (ids) and rules stored on the stack's S3.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import api_url, mlflow_uris

SENTINEL_BUCKET = "my-bucket"
SENTINEL_PREFIX = "sentinel/"
PRIVATE_BUCKET = "sentinel-private"
MODEL = "sec_churn"
MONITORED = "sec_monitored"
PRIVATE_COLUMNS = ("ssn_secret", "salary_secret")


@dataclass
class World:
    """Everything a hostile case needs: clients, the sentinel folder, a registered model and its run."""

    env: dict[str, str]
    http: httpx.Client
    s3: Any
    mlflow: Any
    host_dir: Path
    run_id: str
    platform_bucket: str

    def snapshot(self) -> dict[str, Any]:
        """The four sentinels, as comparable values."""
        return {
            "host_dir": _host_files(self.host_dir),
            "s3": _s3_objects(self.s3, SENTINEL_BUCKET, SENTINEL_PREFIX) | _s3_objects(self.s3, PRIVATE_BUCKET, ""),
            "mlflow_versions": _model_versions(self.mlflow),
            "monitoring": _monitoring_state(self.s3, self.platform_bucket),
        }


def _host_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _s3_objects(s3: Any, bucket: str, prefix: str) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            out[f"{bucket}/{obj['Key']}"] = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out


def _model_versions(client: Any) -> set[tuple[str, str]]:
    versions = {(mv.name, str(mv.version)) for mv in client.search_model_versions(max_results=10_000)}
    names = {(m.name, "") for m in client.search_registered_models(max_results=1000)}
    return versions | names


def _monitoring_state(s3: Any, bucket: str) -> dict[str, Any]:
    """Record ids under ``monitoring/records/`` (compaction may regroup objects; ids must not change) and the rules."""
    ids: set[str] = set()
    for key, raw in _s3_objects(s3, bucket, "monitoring/records/").items():
        for line in raw.decode(errors="replace").splitlines():
            if line.strip():
                try:
                    ids.add(json.loads(line).get("monitoring_id", f"?{key}"))
                except ValueError:
                    ids.add(f"unreadable:{key}")
    rules = _s3_objects(s3, bucket, "monitoring/rules/")
    return {"record_ids": ids, "rules": rules}


def register_model(env: dict[str, str], name: str) -> tuple[str, str]:
    """Train a small classifier on the demo data, log it the way training does, register version 1."""
    import lightgbm as lgb

    from asgard_ray.local.demo_data import customer_aggregates

    tracking = f"http://127.0.0.1:{env['ASGARD_MLFLOW_PORT']}"
    cols = ["total_orders", "avg_order_value", "days_since_last_order"]
    gold = customer_aggregates()
    train = gold[gold["event_timestamp"] == gold["event_timestamp"].max()]
    est = lgb.LGBMClassifier(n_estimators=10, num_leaves=7, n_jobs=1, verbose=-1).fit(train[cols], train["churned"])
    # both URIs, explicitly: the registry URI otherwise follows this process's MLFLOW_TRACKING_URI, which the
    # integration fixtures point at their own server (ci2: the version create went there and got 500s)
    with mlflow_uris(tracking):
        return _log_and_register(est, train[cols], name, tracking)


def _log_and_register(est: Any, X: Any, name: str, tracking: str) -> tuple[str, str]:
    import mlflow
    from mlflow.models import infer_signature
    from mlflow.tracking import MlflowClient

    from asgard_ray import lineage

    cols = list(X.columns)
    mlflow.set_experiment("security-suite")
    with mlflow.start_run() as run:
        info = mlflow.lightgbm.log_model(est, name=lineage.MODEL_ARTIFACT, signature=infer_signature(X, est.predict(X)))
        mlflow.set_tags(
            {
                lineage.TAG_FEATURE_COLUMNS: json.dumps(cols),
                lineage.TAG_FEATURE_VIEWS: json.dumps(["customer_features"]),
                lineage.TAG_JOIN_KEYS: json.dumps(["customer_id"]),
                lineage.TAG_LABEL: "churned",
                lineage.TAG_FRAMEWORK: "lightgbm",
                lineage.TAG_MODEL_TYPE: "classification",
                lineage.TAG_CLASSES: json.dumps([int(c) for c in est.classes_]),
                lineage.TAG_FEAST_REGISTRY_VERSION: "security-suite",
            }
        )
    mv = mlflow.register_model(info.model_uri, name)
    assert MlflowClient(tracking, registry_uri=tracking).get_model_version(name, mv.version).run_id == run.info.run_id
    MlflowClient(tracking, registry_uri=tracking).set_registered_model_alias(name, "champion", mv.version)
    return run.info.run_id, str(mv.version)


def log_model_run(env: dict[str, str]) -> str:
    """Log a small finished training run (a model and its lineage tags), unregistered; return its run id."""
    import lightgbm as lgb
    import mlflow
    from mlflow.models import infer_signature

    from asgard_ray import lineage
    from asgard_ray.local.demo_data import customer_aggregates

    tracking = f"http://127.0.0.1:{env['ASGARD_MLFLOW_PORT']}"
    cols = ["total_orders", "avg_order_value", "days_since_last_order"]
    gold = customer_aggregates(500)
    est = lgb.LGBMClassifier(n_estimators=5, num_leaves=7, n_jobs=1, verbose=-1).fit(gold[cols], gold["churned"])
    client = mlflow.MlflowClient(tracking, registry_uri=tracking)
    experiment = client.get_experiment_by_name("security-suite")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("security-suite")
    run = client.create_run(experiment_id, tags={lineage.TAG_FEATURE_COLUMNS: json.dumps(cols), lineage.TAG_LABEL: "churned"})
    with mlflow_uris(tracking), mlflow.start_run(run_id=run.info.run_id):
        mlflow.lightgbm.log_model(est, name=lineage.MODEL_ARTIFACT, signature=infer_signature(gold[cols], est.predict(gold[cols])))
    return run.info.run_id


def _private_parquet() -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table({PRIVATE_COLUMNS[0]: ["123-45-6789"], PRIVATE_COLUMNS[1]: [250_000]}), buf)
    return buf.getvalue()


@pytest.fixture(scope="session")
def world(stack: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The stack with sentinels planted, the seed feature view and a registered model (``sec_churn`` v1)."""
    import boto3
    from mlflow.tracking import MlflowClient

    from asgard_ray.features.specs import SEED_EXAMPLE

    env = stack
    host_dir = tmp_path_factory.mktemp("sentinel_host")
    (host_dir / "sub").mkdir()
    (host_dir / "a.txt").write_text("keep me\n")
    (host_dir / "sub" / "b.txt").write_text("keep me too\n")
    (host_dir / "private.parquet").write_bytes(_private_parquet())

    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{env['ASGARD_S3_PORT']}",
        aws_access_key_id="asgard",
        aws_secret_access_key="asgard-secret",
        region_name="us-east-1",
    )
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for bucket in (SENTINEL_BUCKET, PRIVATE_BUCKET):
        if bucket not in existing:
            s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=SENTINEL_BUCKET, Key=f"{SENTINEL_PREFIX}a.txt", Body=b"keep me\n")
    s3.put_object(Bucket=SENTINEL_BUCKET, Key=f"{SENTINEL_PREFIX}sub/b.txt", Body=b"keep me too\n")
    s3.put_object(Bucket=SENTINEL_BUCKET, Key=f"{SENTINEL_PREFIX}private.parquet", Body=_private_parquet())
    s3.put_object(Bucket=PRIVATE_BUCKET, Key="private.parquet", Body=_private_parquet())
    s3.put_object(Bucket=PRIVATE_BUCKET, Key="dir/a.txt", Body=b"private\n")

    http = httpx.Client(base_url=api_url(env), timeout=180)
    r = http.post("/feast/features", json=SEED_EXAMPLE)
    assert r.status_code in (200, 201), r.text
    run_id, _ = register_model(env, MODEL)
    # a monitored model with one record, so history and the record count have something to guard
    r = http.post(
        "/mlops/monitoring",
        json={
            "model_name": MONITORED,
            "model_version": "1",
            "metric_type": "data_quality",
            "metrics": {"null_rate": 0.01},
        },
    )
    assert r.status_code == 200, r.text
    # Embedded mode acknowledges a record from the monitoring write-ahead log and uploads it to S3 just
    # after: wait for that upload, or the first case's before/after snapshots straddle it (ci10 reran it).
    record_id, bucket = r.json()["monitoring_id"], env.get("S3_BUCKET", "asgard")
    deadline = time.monotonic() + 60
    while record_id not in _monitoring_state(s3, bucket)["record_ids"]:
        assert time.monotonic() < deadline, f"monitoring record {record_id} never reached s3://{bucket}/monitoring/records/"
        time.sleep(0.1)
    yield World(
        env=env,
        http=http,
        s3=s3,
        mlflow=MlflowClient(f"http://127.0.0.1:{env['ASGARD_MLFLOW_PORT']}", registry_uri=f"http://127.0.0.1:{env['ASGARD_MLFLOW_PORT']}"),
        host_dir=host_dir,
        run_id=run_id,
        platform_bucket=env.get("S3_BUCKET", "asgard"),
    )
    http.close()
