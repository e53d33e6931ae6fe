"""Real-time predictions on a real local Ray Serve, MLflow server, Feast online store (SQLite) and S3 server.

One prediction app (``asgard-predict`` at ``/predict``) and the control app run on a Serve proxy on
a free loopback port. Covers materialization as a Ray task, predictions by version, alias, default
and inline, equality with batch scoring, the 4xx/413 cases, the zero-failure alias swap and the
prediction app surviving a restart of the control app.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from asgard_ray.config import Settings
from tests.conftest import free_port
from tests.integration.test_scoring import FEATURES, register_churn_model

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

MODEL = "realtime_churn"


@pytest.fixture(scope="module")
def versions(settings: Settings, customer_features: str) -> dict[str, str]:
    """v1 (alias champion) and v2 (no alias yet), both LightGBM."""
    v1 = register_churn_model(settings, MODEL, framework="lightgbm", alias="champion")
    v2 = register_churn_model(settings, MODEL, framework="lightgbm", alias=None)
    return {"v1": v1, "v2": v2}


@pytest.fixture(scope="module")
def materialized(settings: Settings, customer_features: str) -> dict[str, Any]:
    """``customer_features`` materialized into the online store by a job of the jobs core (a Ray task)."""
    from asgard_ray import jobs
    from asgard_ray.serving.materialize import MaterializeRequest

    record = jobs.submit_job_sync("materialize", MaterializeRequest(feature_views=[customer_features]), settings,
                                  wait=True, timeout=900)
    assert record.status == "completed" and record.job_id.startswith("mat-"), record
    assert record.result is not None
    return record.result


@pytest.fixture(scope="module")
def served(settings: Settings, versions: dict[str, str], materialized: dict[str, Any]) -> Iterator[str]:
    """The prediction app and the control app on a Serve proxy on a free port; yields the base URL."""
    from ray import serve

    from asgard_ray.api.serve import build_app
    from asgard_ray.api.predict import PREDICT_APP, PREDICT_PREFIX, predict_app

    port = free_port()
    serving_settings = settings.model_copy(update={"asgard_serve_max_rows": 5, "asgard_serve_alias_poll_s": 0.5,
                                                   "asgard_serve_sample_rate": 1.0, "asgard_api_port": port})
    saved = dict(os.environ)
    os.environ.update(serving_settings.to_env())  # build_app reads the environment, as `serve deploy` does
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(predict_app(serving_settings, num_replicas=1), name=PREDICT_APP, route_prefix=PREDICT_PREFIX)
        serve.run(build_app(), name="asgard", route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        os.environ.clear()
        os.environ.update(saved)
        serve.shutdown()


def _predict(client: httpx.Client, body: dict[str, Any], path: str = f"/predict/{MODEL}") -> httpx.Response:
    return client.post(path, json=body, timeout=60)


def test_materialization_runs_on_ray_and_is_recorded(settings: Settings, materialized: dict[str, Any]) -> None:
    from asgard_ray.features import FeatureRegistry
    from asgard_ray.serving.online import OnlineFeatures

    assert [v["name"] for v in materialized["feature_views"]] == ["customer_features"]
    info = FeatureRegistry(settings).get("customer_features")
    assert info.last_materialized_at is not None
    rows = OnlineFeatures(settings).lookup(["customer_features"], FEATURES, {"customer_id": [1, 2, 99_999_999]})
    assert rows[0] is not None and rows[1] is not None and rows[2] is None
    assert isinstance(rows[0]["total_orders"], int)


def test_predict_by_version_alias_default_and_inline(served: str, versions: dict[str, str]) -> None:
    with httpx.Client(base_url=served) as client:
        by_version = _predict(client, {"model_version": versions["v2"], "entities": {"customer_id": [1, 2]}})
        assert by_version.status_code == 200, by_version.text
        body = by_version.json()
        assert body["model_version"] == versions["v2"]
        assert [p["entity"] for p in body["predictions"]] == [{"customer_id": 1}, {"customer_id": 2}]
        first = body["predictions"][0]
        assert set(first["features"]) == set(FEATURES) and first["model_version"] == versions["v2"]
        assert set(first["probabilities"]) == {"0", "1"} and abs(sum(first["probabilities"].values()) - 1) < 1e-9

        by_alias = _predict(client, {"model_version": "champion", "entities": {"customer_id": [1]}}).json()
        assert by_alias["model_version"] == versions["v1"] and by_alias["alias"] == "champion"
        default = _predict(client, {"entities": {"customer_id": [1]}}).json()
        assert default["model_version"] == versions["v1"]  # champion exists: the default follows it

        inline = _predict(client, {"model_version": versions["v1"], "instances": [first["features"]]})
        assert inline.status_code == 200, inline.text
        assert inline.json()["predictions"][0]["features"] == first["features"]
        assert inline.json()["predictions"][0]["probabilities"] == by_alias["predictions"][0]["probabilities"]

        missing = _predict(client, {"model_version": "1", "entities": {"customer_id": [1, 99_999_999]}}).json()
        assert missing["missing_entities"] == [{"customer_id": 99_999_999}]
        assert [p["entity"] for p in missing["predictions"]] == [{"customer_id": 1}]


def test_control_route_forwards_and_equals_batch_scoring(settings: Settings, served: str, versions: dict[str, str]) -> None:
    from asgard_ray.scoring import BatchScoreRequest, BatchScoringService, read_scored_rows

    with httpx.Client(base_url=served) as client:
        live = client.post("/mlops/serve", json={"model_name": MODEL, "model_version": "champion",
                                                 "feature_views": ["customer_features"],
                                                 "entities": {"customer_id": [1, 2, 3]}}, timeout=60)
    assert live.status_code == 200, live.text
    batch = BatchScoringService(settings).submit(BatchScoreRequest.model_validate({
        "model_name": MODEL, "model_version": versions["v1"], "feature_views": ["customer_features"],
        "entities_df": {"customer_id": [1, 2, 3]}, "output_path": "s3://asgard/test-serving/equality", "overwrite": True}))
    assert batch.status == "completed", batch.error
    scored = read_scored_rows(settings, batch.output_path).set_index("customer_id")
    for row in live.json()["predictions"]:
        cid = row["entity"]["customer_id"]
        assert row["prediction"] == scored.loc[cid, "prediction"]
        assert row["probabilities"]["1"] == pytest.approx(scored.loc[cid, "proba_1"], abs=1e-12)
        for col in FEATURES:
            assert row["features"][col] == pytest.approx(scored.loc[cid, col])


@pytest.mark.parametrize(("path", "body", "status", "words"), [
    (f"/predict/{MODEL}", {"entities": {"customer_id": list(range(6))}}, 413, "/mlops/serve/batch"),
    ("/mlops/serve", {"model_name": MODEL, "entities": {"customer_id": list(range(6))}}, 413, "/mlops/serve/batch"),
    ("/predict/no_such_model", {"entities": {"customer_id": [1]}}, 404, "no_such_model"),
    (f"/predict/{MODEL}", {"model_version": "no_such_alias", "entities": {"customer_id": [1]}}, 404, "no_such_alias"),
    ("/mlops/serve", {"model_name": MODEL, "model_version": "no_such_alias", "entities": {"customer_id": [1]}}, 404, "no_such_alias"),
    (f"/predict/{MODEL}", {"model_version": "1", "instances": [{"total_orders": 1, "avg_order_value": 2.0}]}, 422, "days_since_last_order"),
    (f"/predict/{MODEL}", {"model_version": "1", "instances": [{"total_orders": "many", "avg_order_value": 2.0,
                                                               "days_since_last_order": 3}]}, 422, "total_orders"),
    (f"/predict/{MODEL}", {"model_version": "1", "entities": {"customer_id": ["one"]}}, 422, "integers"),
    (f"/predict/{MODEL}", {"model_version": "1", "entities": {"account_id": [1]}}, 422, "customer_id"),
    (f"/predict/{MODEL}", {"model_version": "1", "feature_views": ["nope"], "entities": {"customer_id": [1]}}, 404, "nope"),
    (f"/predict/{MODEL}", {"model_version": "1"}, 422, "entities"),
])
def test_bad_requests_get_a_clear_4xx(served: str, path: str, body: dict[str, Any], status: int, words: str) -> None:
    with httpx.Client(base_url=served) as client:
        resp = client.post(path, json=body, timeout=60)
    assert resp.status_code == status, resp.text
    assert words in resp.text and "Traceback" not in resp.text


def test_alias_swap_has_zero_failures(settings: Settings, served: str, versions: dict[str, str]) -> None:
    """Clients loop through a move of champion from v1 to v2: no request fails and each client moves v1 -> v2 once."""
    from mlflow import MlflowClient

    seen: dict[int, list[str]] = {0: [], 1: []}
    failures: list[str] = []
    stop = threading.Event()

    def loop(i: int) -> None:
        with httpx.Client(base_url=served) as client:
            for _ in range(3000):  # bounded in count and in time
                if stop.is_set():
                    return
                try:
                    resp = _predict(client, {"model_version": "champion", "entities": {"customer_id": [i + 1]}})
                    if resp.status_code != 200:
                        failures.append(f"{resp.status_code} {resp.text[:200]}")
                    else:
                        seen[i].append(resp.json()["model_version"])
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))

    mlflow = MlflowClient(tracking_uri=settings.tracking_uri)
    mlflow.set_registered_model_alias(MODEL, "champion", versions["v1"])
    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in seen]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 30
        while min(len(v) for v in seen.values()) < 20 and time.monotonic() < deadline:
            time.sleep(0.1)
        mlflow.set_registered_model_alias(MODEL, "champion", versions["v2"])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(v and v[-1] == versions["v2"] and v.count(versions["v2"]) >= 20 for v in seen.values()):
            time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
        mlflow.set_registered_model_alias(MODEL, "champion", versions["v1"])
    print(f"alias swap: {sum(len(v) for v in seen.values())} requests, {len(failures)} failures")
    assert failures == []
    for versions_seen in seen.values():
        assert versions_seen[0] == versions["v1"] and versions_seen[-1] == versions["v2"]
        switch = versions_seen.index(versions["v2"])
        assert set(versions_seen[switch:]) == {versions["v2"]}  # moved once, never back


def test_prediction_app_survives_a_control_app_restart(settings: Settings, served: str, versions: dict[str, str]) -> None:
    from ray import serve

    from asgard_ray.api.serve import build_app

    body = {"model_version": versions["v1"], "entities": {"customer_id": [1]}}
    with httpx.Client(base_url=served) as client:
        assert client.get("/mlops/health").status_code == 200
        serve.delete("asgard")
        assert client.get("/mlops/health").status_code == 404  # the control app is gone ...
        results = [_predict(client, body).status_code for _ in range(20)]
        assert results == [200] * 20  # ... predictions go on
        serve.run(build_app(), name="asgard", route_prefix="/")
        assert client.get("/mlops/health").status_code == 200
        again = client.post("/mlops/serve", json={"model_name": MODEL, **body}, timeout=60)
        assert again.status_code == 200 and again.json()["model_version"] == versions["v1"]


def test_served_traffic_is_counted_and_sampled_into_monitoring(settings: Settings, served: str) -> None:
    """Every request above was sampled (rate 1.0): the monitoring actor gets realtime records; /mlops/status counts."""
    from asgard_ray.errors import NotFound
    from asgard_ray.monitoring.actor import MonitoringClient
    from asgard_ray.monitoring.schemas import HistoryRequest

    with httpx.Client(base_url=served) as client:
        status = client.get("/mlops/status", timeout=60).json()
    counts = status["serving"]["models"][MODEL]
    assert counts["requests"] > 20 and counts["p50_ms"] > 0
    records: list = []
    deadline = time.monotonic() + 60  # the replica sends samples every 10 s
    while not records and time.monotonic() < deadline:
        try:
            history = MonitoringClient(settings).history(HistoryRequest(model_name=MODEL, metric_type="custom"))
            records = [r for r in history.records if (r.tags or {}).get("source") == "realtime"]
        except NotFound:
            pass
        time.sleep(1)
    assert records, "no sampled real-time predictions reached the monitoring actor"
    assert records[0].metrics["sampled_rows"] >= 1
