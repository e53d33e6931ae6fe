"""Drift computed from a scored output on Ray Data against a reference profile logged in MLflow."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
from mlflow.tracking import MlflowClient

from asgard_ray import lineage
from asgard_ray.config import Settings
from asgard_ray.errors import NotFound
from asgard_ray.local.demo_data import customer_aggregates
from asgard_ray.monitoring.actor import MonitoringClient
from asgard_ray.monitoring.compute import compute_drift
from asgard_ray.monitoring.profile import build_reference_profile
from asgard_ray.monitoring.schemas import ComputeRequest, HistoryRequest
from asgard_ray.scoring.manifest import Manifest, ManifestFile, write_manifest
from asgard_ray.storage import resolve

pytestmark = pytest.mark.integration

FEATURES = ["total_orders", "avg_order_value", "days_since_last_order", "support_tickets"]


def churn_score(df: pd.DataFrame) -> np.ndarray:
    """A fixed 'model': the demo label's own logistic form."""
    logit = -1.2 + 0.025 * df["days_since_last_order"] - 0.12 * df["total_orders"] + 0.35 * df["support_tickets"]
    return 1 / (1 + np.exp(-logit.to_numpy(dtype="float64")))


def make_scored_output(settings: Settings, model_name: str, drift_factor: float = 1.6) -> dict[str, Any]:
    """Log a training run with a reference profile, then write a scored output and its manifest."""
    gold = customer_aggregates()
    train = gold[gold["event_timestamp"] == pd.Timestamp("2025-09-01", tz="UTC")].reset_index(drop=True)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_experiment("monitoring-tests")
    with mlflow.start_run() as run:
        profile = build_reference_profile(train, FEATURES, predictions=churn_score(train), label=train["churned"])
        mlflow.log_dict(profile, lineage.PROFILE_ARTIFACT)
        mlflow.set_tags({lineage.TAG_LABEL: "churned", lineage.TAG_MODEL_TYPE: "classification",
                         lineage.TAG_CLASSES: "[0, 1]", lineage.TAG_FEATURE_COLUMNS: json.dumps(FEATURES)})
    scored = gold[gold["event_timestamp"] == pd.Timestamp("2025-10-01", tz="UTC")].reset_index(drop=True)
    scored["event_timestamp"] = pd.Timestamp("2025-10-15", tz="UTC")
    scored["avg_order_value"] = scored["avg_order_value"] * drift_factor  # injected drift
    scored.loc[scored.index % 10 == 0, "support_tickets"] = np.nan  # 10% missing
    proba = churn_score(scored.fillna({"support_tickets": 0}))
    scored["prediction"] = (proba >= 0.5).astype("int64")
    scored["prediction_proba"], scored["proba_0"], scored["proba_1"] = proba, 1 - proba, proba
    job_id = f"batch-{uuid.uuid4().hex[:12]}"
    output = settings.s3_uri("predictions", "monitoring-tests", job_id)
    fs, root = resolve(settings, output)
    cols = ["customer_id", "event_timestamp", *FEATURES, "prediction", "prediction_proba", "proba_0", "proba_1"]
    files = []
    for i, part in enumerate(np.array_split(scored[cols], 3)):
        path = f"{root}/model_version=1/score_date=2025-10-15/{job_id}_{i}.parquet"
        pq.write_table(pa.Table.from_pandas(part.reset_index(drop=True), preserve_index=False), path, filesystem=fs)
        files.append(ManifestFile(path=f"s3://{path}", rows=len(part)))
    now = datetime.now(UTC)
    write_manifest(settings, Manifest(
        job_id=job_id, model_name=model_name, model_version="1", run_id=run.info.run_id, model_type="classification",
        feature_columns=FEATURES, join_keys=["customer_id"], probability_columns=["prediction_proba", "proba_0", "proba_1"],
        classes=[0, 1], output_path=output, files=files, total_rows=len(scored), scored_at=now, started_at=now, finished_at=now,
    ))
    return {"job_id": job_id, "output_path": output, "scored": scored, "gold": gold, "run_id": run.info.run_id}


@pytest.fixture(scope="module")
def client(settings: Settings, ray_session: None) -> MonitoringClient:
    tag = uuid.uuid4().hex[:8]
    c = MonitoringClient(settings, name=f"asgard-monitoring-compute-{tag}", prefix=f"monitoring-compute-{tag}")
    yield c
    ray.kill(c.handle, no_restart=True)


def test_drift_from_data_becomes_records_with_alerts_and_a_report(settings: Settings, client: MonitoringClient) -> None:
    model = f"churn_drift_{uuid.uuid4().hex[:6]}"
    out = make_scored_output(settings, model)
    result = compute_drift(settings, ComputeRequest(output_path=out["output_path"], label_table="customer_aggregates"),
                           job_id="drift-test-1", client=client)
    assert result["rows"] == len(out["scored"])
    records = {r.metric_type: r for r in client.history(HistoryRequest(model_name=model)).records}
    assert set(records) == {"feature_drift", "prediction_drift", "data_quality", "model_performance"}
    drift = records["feature_drift"].metrics
    assert drift["avg_order_value.psi"] > 0.1 and drift["avg_order_value.ks_pvalue"] < 0.05
    assert "avg_order_value.psi drift detected" in " ".join(records["feature_drift"].alerts)
    assert drift["days_since_last_order.psi"] < 0.1  # unchanged distribution: no PSI alert
    assert not any(a.startswith("days_since_last_order.psi") for a in records["feature_drift"].alerts)
    quality = records["data_quality"].metrics
    assert quality["support_tickets.missing_rate"] == pytest.approx(0.1)
    assert any(a.startswith("support_tickets.missing_rate missing data") for a in records["data_quality"].alerts)
    assert quality["schema_mismatch"] == 0
    assert 0 < quality["avg_order_value.out_of_range_rate"] < 0.05  # a few values above the training max
    # performance is exact (summed counts): compare with a whole-data point-in-time join in pandas
    labels = out["gold"][["customer_id", "event_timestamp", "churned"]].sort_values("event_timestamp")
    scored = out["scored"].drop(columns=["churned"]).astype({"event_timestamp": "datetime64[us, UTC]"})
    joined = pd.merge_asof(scored.sort_values("event_timestamp"), labels, on="event_timestamp", by="customer_id")
    perf = records["model_performance"].metrics
    assert perf["accuracy"] == pytest.approx(float((joined["prediction"] == joined["churned"]).mean()), abs=1e-12)
    assert 0.5 < perf["roc_auc"] <= 1.0 and perf["label_coverage"] == 1.0
    assert "prediction.psi" not in drift and "ks_statistic" in records["prediction_drift"].metrics
    # idempotent: the same drift job id does not add records
    compute_drift(settings, ComputeRequest(output_path=out["output_path"], label_table="customer_aggregates", log_report=False),
                  job_id="drift-test-1", client=client)
    assert client.history(HistoryRequest(model_name=model)).total_records == 4
    # the report is in the model version's monitoring run
    ml = MlflowClient(tracking_uri=settings.tracking_uri)
    artifacts = [a.path for a in ml.list_artifacts(result["mlflow_run_id"], "drift_reports/drift-test-1")]
    assert "drift_reports/drift-test-1/drift_report.png" in artifacts
    png = ml.download_artifacts(result["mlflow_run_id"], "drift_reports/drift-test-1/drift_report.png")
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_schema_mismatch_and_missing_output(settings: Settings, client: MonitoringClient) -> None:
    with pytest.raises(NotFound, match="_manifest.json"):
        compute_drift(settings, ComputeRequest(output_path=settings.s3_uri("predictions", "nothing-here")), client=client)
    model = f"churn_schema_{uuid.uuid4().hex[:6]}"
    out = make_scored_output(settings, model, drift_factor=1.0)
    fs, _ = resolve(settings, out["output_path"])
    # a profile that expects a column the output lacks
    run = MlflowClient(tracking_uri=settings.tracking_uri)
    profile = json.loads(open(run.download_artifacts(out["run_id"], lineage.PROFILE_ARTIFACT)).read())
    profile["feature_columns"].append("tenure_days")
    profile["features"]["tenure_days"] = profile["features"]["total_orders"]
    with mlflow.start_run(run_id=out["run_id"]):
        mlflow.log_dict(profile, lineage.PROFILE_ARTIFACT)
    result = compute_drift(settings, ComputeRequest(output_path=out["output_path"], label_column="no_such_label", label_table="customer_aggregates",
                                                    log_report=False), client=client)
    quality = client.history(HistoryRequest(model_name=model, metric_type="data_quality")).records[0]
    assert quality.metrics["schema_mismatch"] == 1
    assert any(a.startswith("schema_mismatch schema mismatch") for a in quality.alerts)
    assert result["schema"]["missing"] == ["tenure_days"]
    assert "no_such_label" in (result["performance_skipped"] or "")


def test_job_entrypoint_computes_drift_as_a_tracked_job(settings: Settings, ray_session: None) -> None:
    import importlib.util
    from pathlib import Path

    from asgard_ray.jobs import JobStore

    spec = importlib.util.spec_from_file_location("monitor_job", Path(__file__).resolve().parents[2] / "jobs" / "monitor.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = f"churn_job_{uuid.uuid4().hex[:6]}"
    out = make_scored_output(settings, model)
    drift_id = f"drift-job-{uuid.uuid4().hex[:6]}"
    result = module.main(["--output-path", out["output_path"], "--label-table", "customer_aggregates", "--no-report",
                          "--drift-job-id", drift_id])
    assert result["rows"] == len(out["scored"]) and result["alert_triggered"]
    record = JobStore(settings).get("monitoring", drift_id)
    assert record.status == "completed" and record.result["monitoring_ids"] == result["monitoring_ids"]
    history = MonitoringClient(settings).history(HistoryRequest(model_name=model))
    assert history.total_records == 4  # stored through the platform's named actor
