"""The demo workflow: the seed's five steps over HTTP against the embedded stack."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from asgard_ray.config import Settings
from asgard_ray.features.specs import SEED_EXAMPLE

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["run_demo"]

log = logging.getLogger(__name__)

FEATURES_BODY = SEED_EXAMPLE


def _train_body(n_customers: int) -> dict[str, Any]:
    return {
        "experiment_name": "customer_churn",
        "model_name": "churn_predictor",
        "framework": "sklearn",
        "model_type": "classification",
        "data_source": {
            "feature_views": ["customer_features"],
            "entities": {"customer_id": list(range(1, n_customers + 1))},
            "target_column": "churned",
        },
        "hyperparameters": {
            "params": {"n_estimators": 100, "random_state": 42},
            "search_space": {
                "max_depth": {"type": "choice", "values": [4, 8, 12]},
                "min_samples_leaf": {"type": "choice", "values": [1, 5]},
            },
            "num_trials": 4,
            "metric": "roc_auc",
            "mode": "max",
        },
        "tags": {"team": "data-science"},
    }


class _Api:
    def __init__(self, base: str, console: Console) -> None:
        self.http = httpx.Client(base_url=base, timeout=900)
        self.console = console

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        resp = self.http.request(method, path, json=body)
        if resp.status_code >= 400:
            raise RuntimeError(f"{method} {path} -> {resp.status_code}: {resp.text[:2000]}")
        return resp.json()


def _show(console: Console, title: str, data: Any, keys: list[str] | None = None) -> None:
    if keys and isinstance(data, dict):
        data = {k: data[k] for k in keys if k in data}
    console.print(Panel(json.dumps(data, indent=2, default=str)[:3000], title=title, expand=False))


def run_demo(settings: Settings, console: Console, n_customers: int = 3000) -> None:
    """Bring the stack up, then register, train, register, score and monitor over HTTP."""
    from asgard_ray.local import up

    with console.status("starting the embedded stack (Ray head, S3, MLflow, Serve API)..."):
        up(settings)
    api = _Api(settings.api_url, console)

    console.rule("Step 1: register features (POST /feast/features)")
    fv = api.call("POST", "/feast/features", FEATURES_BODY)
    _show(console, "feature view", fv, ["name", "status", "entities", "source_uri", "registry_version"])
    with console.status("materializing the view into the online store (a Ray job)..."):
        mat = api.call("POST", "/feast/materialize", {"feature_views": ["customer_features"]})
    _show(console, "materialized for real-time lookups (POST /feast/materialize)", mat, ["job_id", "status", "result"])

    with console.status("previewing a point-in-time training frame on Ray..."):
        from asgard_ray.features import build_training_frame
        from asgard_ray.runtime import connect

        connect(settings)
        frame = build_training_frame(settings, ["customer_features"], {"customer_id": [1, 2, 3, 4, 5]}, label="churned")
    console.print(frame.df.to_string(index=False))

    console.rule("Step 2: train with trials on Ray (POST /mlops/models)")
    with console.status(f"training on {n_customers} customers, 4 trials..."):
        model = api.call("POST", "/mlops/models", _train_body(n_customers))
    _show(
        console,
        "training run",
        model,
        ["run_id", "model_uri", "metrics", "status", "num_trials", "best_params", "feature_snapshots", "mlflow_run_url", "warnings"],
    )

    console.rule("Step 3: register the model (POST /mlops/registry)")
    reg = api.call(
        "POST", "/mlops/registry", {"model_name": "churn_predictor", "run_id": model["run_id"], "description": "Churn prediction model v1"}
    )
    _show(console, "model version", reg)
    version = str(reg["version"])
    api.call("PUT", "/mlops/registry/churn_predictor/aliases/champion", {"version": version})

    console.rule("Step 4: batch predictions on Ray Data (POST /mlops/serve/batch)")
    output = f"s3://my-bucket/predictions/batch_{datetime.now(UTC):%Y_%m_%d}.parquet"
    with console.status("scoring..."):
        batch = api.call(
            "POST",
            "/mlops/serve/batch",
            {
                "model_name": "churn_predictor",
                "model_version": version,
                "feature_views": ["customer_features"],
                "entities_df": {"customer_id": list(range(1, 11))},
                "output_path": output,
                "output_table": "predictions.churn_predictor",
                "overwrite": True,
            },
        )
    _show(console, "batch job (Parquet on S3, and one snapshot of the Iceberg table predictions.churn_predictor)", batch)
    scored = _preview_output(settings, console, batch.get("output_path", output))

    console.rule("Step 4b: a real-time prediction on Ray Serve (POST /mlops/serve)")
    live = api.call(
        "POST",
        "/mlops/serve",
        {
            "model_name": "churn_predictor",
            "model_version": "champion",
            "feature_views": ["customer_features"],
            "entities": {"customer_id": [1]},
        },
    )
    _show(
        console,
        "real-time answer for customer 1 (online features from Feast)",
        live,
        ["model_version", "alias", "predictions", "missing_entities", "latency_ms"],
    )
    row = scored[scored["customer_id"] == 1]
    if not row.empty and live.get("predictions"):
        batch_pred = row.iloc[0]["prediction"]
        console.print(
            f"customer 1: real-time prediction {live['predictions'][0]['prediction']} "
            f"(version {live['model_version']}), batch prediction {batch_pred}"
        )

    console.rule("Step 5: monitoring (POST /mlops/monitoring, /compute, /history)")
    with console.status("scoring 2,000 more customers and computing drift against the training reference..."):
        big = api.call(
            "POST",
            "/mlops/serve/batch",
            {
                "model_name": "churn_predictor",
                "model_version": "champion",
                "feature_views": ["customer_features"],
                "entities_df": {"customer_id": list(range(5001, 7001))},
                "output_path": f"s3://my-bucket/predictions/demo_drift_{datetime.now(UTC):%Y_%m_%d}",
                "overwrite": True,
            },
        )
        drift = api.call("POST", "/mlops/monitoring/compute", {"job_id": big["job_id"], "wait_s": 600})
    _show(console, "computed drift", drift)
    manual = api.call(
        "POST",
        "/mlops/monitoring",
        {
            "model_name": "churn_predictor",
            "model_version": version,
            "metric_type": "prediction_drift",
            "metrics": {"drift_score": 0.15, "psi": 0.08, "js_divergence": 0.12},
            "reference_data": {"mean": 0.35, "std": 0.12},
            "current_data": {"mean": 0.42, "std": 0.15},
            "tags": {"deployment": "production"},
        },
    )
    _show(console, "manual monitoring record", manual)
    history = api.call("POST", "/mlops/monitoring/history", {"model_name": "churn_predictor", "model_version": version, "limit": 5})
    _show(console, "history summary", {"total_records": history.get("total_records"), "summary": history.get("summary")})

    table = Table("where to look", "URL")
    table.add_row("API and Swagger", f"{settings.api_url}/docs")
    table.add_row("Ray dashboard", settings.dashboard_url)
    table.add_row("MLflow UI", settings.tracking_uri)
    table.add_row("Monitoring page", f"{settings.api_url}/mlops/monitoring/dashboard")
    table.add_row("Predictions (Parquet)", batch.get("output_path", output))
    table.add_row("Predictions (Iceberg)", f"predictions.churn_predictor, snapshot {batch.get('output_snapshot_id')}")
    console.print(table)
    console.print(
        f"The Ray dashboard asks for the auth token ({settings.token_path}): [bold]asgard token[/] prints it. "
        'For your own `ray job submit`: [bold]eval "$(asgard token --env)"[/].'
    )
    console.print("Stop the stack with [bold]asgard down[/] (state stays under ASGARD_HOME).")


def _preview_output(settings: Settings, console: Console, output: str) -> pd.DataFrame:
    """Print a few scored rows, read through the manifest (the commit marker); return all of them."""
    import pandas as pd
    import pyarrow.parquet as pq

    from asgard_ray.storage import read_json, resolve

    manifest = read_json(settings, output.rstrip("/") + "/_manifest.json")
    files = [f["path"] for f in manifest["files"]]
    fs, _ = resolve(settings, output)
    frame = pd.concat([pq.read_table(f.removeprefix("s3://"), filesystem=fs).to_pandas() for f in files], ignore_index=True)
    console.print(f"{manifest['total_rows']} rows in {len(files)} file(s) under {output}; first rows:")
    console.print(frame.head(5).to_string(index=False))
    return frame
