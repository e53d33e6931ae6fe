"""The seed's workflow ends with a real-time prediction for customer 1 that matches its batch prediction.

Over HTTP against the session's private stack (``asgard up``): register the feature view,
materialize it as a job, train and register a model with alias ``champion``, score customer 1 in
batch, then ask ``POST /mlops/serve`` and the prediction app's own ``POST /predict/<model>``.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from asgard_ray.features.specs import SEED_EXAMPLE
from tests.conftest import api_url, stack_settings

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(1500),
]

MODEL = "realtime_e2e"


def _ok(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code in (200, 201), f"{resp.request.method} {resp.request.url} -> {resp.status_code}: {resp.text[:1000]}"
    return resp.json()


def test_realtime_prediction_for_customer_1_matches_batch(stack: dict[str, str]) -> None:
    from asgard_ray.scoring import read_scored_rows

    with httpx.Client(base_url=api_url(stack), timeout=900) as api:
        _ok(api.post("/feast/features", json=SEED_EXAMPLE))
        job = _ok(api.post("/feast/materialize", json={"feature_views": ["customer_features"]}))
        assert job["status"] == "completed" and job["job_id"].startswith("mat-"), job
        assert _ok(api.get("/feast/features/customer_features"))["last_materialized_at"]

        trained = _ok(
            api.post(
                "/mlops/models",
                json={
                    "experiment_name": "realtime_e2e",
                    "model_name": MODEL,
                    "framework": "lightgbm",
                    "model_type": "classification",
                    "data_source": {
                        "feature_views": ["customer_features"],
                        "entities": {"customer_id": list(range(1, 401))},
                        "target_column": "churned",
                    },
                    "hyperparameters": {"params": {"n_estimators": 20}, "num_trials": 1},
                },
            )
        )
        version = str(_ok(api.post("/mlops/registry", json={"model_name": MODEL, "run_id": trained["run_id"]}))["version"])
        _ok(api.put(f"/mlops/registry/{MODEL}/aliases/champion", json={"version": version}))

        batch = _ok(
            api.post(
                "/mlops/serve/batch",
                json={
                    "model_name": MODEL,
                    "model_version": version,
                    "feature_views": ["customer_features"],
                    "entities_df": {"customer_id": [1]},
                    "output_path": "s3://asgard/e2e-realtime/customer1",
                    "overwrite": True,
                },
            )
        )
        assert batch["status"] == "completed", batch
        # the stack's own settings: os.environ holds the integration fixtures' S3_ENDPOINT_URL (the ci2 failure)
        scored = read_scored_rows(stack_settings(stack), batch["job_id"]).iloc[0]

        body = {"model_name": MODEL, "feature_views": ["customer_features"], "entities": {"customer_id": [1]}}
        live = _ok(api.post("/mlops/serve", json=body))
        direct = _ok(api.post(f"/predict/{MODEL}", json=body))
        for answer in (live, direct):
            assert answer["model_version"] == version  # no version asked: champion
            (row,) = answer["predictions"]
            assert row["entity"] == {"customer_id": 1}
            assert row["prediction"] == scored["prediction"]
            assert row["probabilities"]["1"] == pytest.approx(scored["proba_1"], abs=1e-12)

        status = _ok(api.get("/mlops/status"))
        assert status["serving"]["models"][MODEL]["requests"] >= 1
