"""Monitoring under faults: the actor is killed under a load of POSTs, and poisoned records are written under it.

Real local Ray, real S3 server and MLflow server; the API is the real FastAPI app through TestClient.
What is asserted is the promise of the README: a record answered 2xx is in history after the actor
comes back, exactly once; and a record that cannot be read back never takes monitoring down.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import pytest
import ray
from fastapi.testclient import TestClient

from asgard_ray.api.app import create_app
from asgard_ray.config import Settings
from asgard_ray.monitoring.actor import ACTOR_NAME
from asgard_ray.storage import list_files, write_bytes

pytestmark = pytest.mark.integration

WRITERS = 4
WRITER_SECONDS = 10.0
WRITER_MAX_POSTS = 40
KILLS = 2


@pytest.fixture(scope="module")
def api(settings: Settings, ray_session: None) -> TestClient:
    with TestClient(create_app(settings), base_url="http://127.0.0.1", raise_server_exceptions=False) as client:
        yield client


def post(model: str, i: int) -> dict:
    return {"model_name": model, "model_version": "1", "metric_type": "feature_drift",
            "metrics": {"total_orders.psi": (i % 50) / 100, "total_orders.ks_pvalue": 0.5}}


def actor(settings: Settings) -> ray.actor.ActorHandle:
    return ray.get_actor(ACTOR_NAME, namespace=settings.ray_namespace)


def history_ids(api: TestClient, model: str) -> list[str]:
    r = api.post("/mlops/monitoring/history", json={"model_name": model, "limit": 10_000})
    assert r.status_code == 200, r.text
    return [rec["monitoring_id"] for rec in r.json()["records"]]


def test_kill_the_actor_under_a_load_of_posts_loses_and_duplicates_nothing(api: TestClient, settings: Settings) -> None:
    model = f"fault_model_{uuid.uuid4().hex[:6]}"
    assert api.post("/mlops/monitoring", json=post(model, -1)).status_code == 200  # the actor is up
    acked: list[str] = []
    refused: list[int] = []
    lock = threading.Lock()
    deadline = time.monotonic() + WRITER_SECONDS

    def writer(w: int) -> None:
        for i in range(WRITER_MAX_POSTS):
            if time.monotonic() > deadline:
                return
            r = api.post("/mlops/monitoring", json=post(model, w * 1000 + i))
            with lock:
                (acked.append(r.json()["monitoring_id"]) if 200 <= r.status_code < 300 else refused.append(r.status_code))

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    for _ in range(KILLS):
        time.sleep(WRITER_SECONDS / (KILLS + 1))
        ray.kill(actor(settings), no_restart=False)  # Ray restarts it; it rebuilds from S3
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    assert set(refused) <= {503}, refused  # a refusal is a clean "retry", never a 500
    assert len(acked) >= WRITERS  # the load really ran through the kills
    stored = history_ids(api, model)
    duplicates = [i for i, n in Counter(stored).items() if n > 1]
    assert duplicates == []
    missing = set(acked) - set(stored)
    assert not missing, f"{len(missing)} acknowledged records lost"
    # a refused POST may still have landed (the PUT succeeded, the answer did not), but nothing else appears
    assert len(acked) + 1 <= len(stored) <= len(acked) + 1 + len(refused)


def test_a_poisoned_record_is_quarantined_and_monitoring_keeps_working(api: TestClient, settings: Settings) -> None:
    model = f"poison_model_{uuid.uuid4().hex[:6]}"
    first = api.post("/mlops/monitoring", json=post(model, 1))
    assert first.status_code == 200, first.text
    today = first.json()["timestamp"][:10]
    deep = "[" * 210 + "]" * 210
    poison = (f'{{"monitoring_id": "mon-deep", "model_name": "{model}", "reference_data": {deep}}}\n'
              "not json at all\n"
              '{"monitoring_id": 7, "model_name": ["x"], "metrics": "high", "timestamp": null}\n').encode()
    write_bytes(settings, settings.s3_uri("monitoring", "records", f"model={model}", f"date={today}",
                                          "0000000000000-poisoned.jsonl"), poison)
    ray.kill(actor(settings), no_restart=False)  # the restart reads the poison
    r = api.post("/mlops/monitoring/history", json={"model_name": model})
    assert r.status_code == 200, r.text
    assert [rec["monitoring_id"] for rec in r.json()["records"]] == [first.json()["monitoring_id"]]
    assert api.post("/mlops/monitoring", json=post(model, 2)).status_code == 200
    status = api.get("/mlops/status").json()
    assert status["monitoring_quarantined_records"] >= 1, status
    assert next(c for c in status["components"] if c["name"] == "monitoring")["healthy"]
    quarantined = list_files(settings, settings.s3_uri("monitoring", "quarantine"))
    assert any("poisoned.jsonl.reason.json" in q for q in quarantined), quarantined
    assert not any("poisoned" in f for f in list_files(settings, settings.s3_uri("monitoring", "records", f"model={model}")))
