"""The monitoring actor on a real local Ray, S3 server and MLflow server: kills, restarts, the mirror."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import ray
from mlflow.tracking import MlflowClient

from asgard_ray.config import Settings
from asgard_ray.errors import NotFound
from asgard_ray.monitoring.actor import MonitoringClient
from asgard_ray.monitoring.mirror import EXPERIMENT, TAG_MODEL, TAG_VERSION
from asgard_ray.monitoring.schemas import HistoryRequest, MonitoringRequest

pytestmark = pytest.mark.integration


@pytest.fixture
def client(settings: Settings, ray_session: None) -> MonitoringClient:
    tag = uuid.uuid4().hex[:8]
    c = MonitoringClient(settings, name=f"asgard-monitoring-test-{tag}", prefix=f"monitoring-test-{tag}")
    yield c
    try:
        ray.kill(c.handle, no_restart=True)
    except Exception:  # already gone
        pass


def body(model: str, i: int) -> MonitoringRequest:
    return MonitoringRequest(model_name=model, model_version="1", metric_type="feature_drift",
                             metrics={"total_orders.psi": i / 100, "total_orders.ks_pvalue": 0.5})


def test_actor_is_named_detached_and_shared(client: MonitoringClient, settings: Settings) -> None:
    client.log(body("shared_model", 1))
    same = ray.get_actor(client.name, namespace=settings.ray_namespace)
    assert ray.get(same.stats.remote())["records"] == 1
    other = MonitoringClient(settings, name=client.name, prefix=client.prefix)
    assert other.history(HistoryRequest(model_name="shared_model")).total_records == 1


def test_kill_under_a_stream_of_writes_loses_nothing(client: MonitoringClient, settings: Settings) -> None:
    model = f"kill_model_{uuid.uuid4().hex[:6]}"
    acked: list[str] = []
    errors: list[Exception] = []
    stop = threading.Event()

    def writer() -> None:
        for i in range(60):
            if stop.is_set():
                return
            try:
                acked.append(client.log(body(model, i)).monitoring_id)
            except Exception as exc:  # recorded and asserted on
                errors.append(exc)

    client.log(body(model, -1))  # actor up before the stream starts
    thread = threading.Thread(target=writer)
    thread.start()
    kills = 0
    for _ in range(2):
        time.sleep(1.0)
        ray.kill(client.handle, no_restart=False)
        kills += 1
    thread.join(timeout=240)
    stop.set()
    assert not thread.is_alive()
    assert errors == []
    history = client.history(HistoryRequest(model_name=model, limit=1000))
    stored = [r.monitoring_id for r in history.records]
    assert set(acked) <= set(stored), f"lost {set(acked) - set(stored)}"
    assert len(stored) == len(set(stored)) == len(acked) + 1  # and no duplicates from retried calls
    assert kills == 2


def test_whole_restart_rebuilds_history_and_keeps_one_mlflow_run(client: MonitoringClient, settings: Settings) -> None:
    model = f"restart_model_{uuid.uuid4().hex[:6]}"
    ids = [client.log(body(model, i)).monitoring_id for i in range(5)]
    assert client.flush_mirror(60)
    ray.kill(client.handle, no_restart=True)  # the actor is gone for good (as if the cluster restarted)
    time.sleep(0.5)
    fresh = MonitoringClient(settings, name=client.name, prefix=client.prefix)
    with pytest.raises(NotFound):
        fresh.history(HistoryRequest(model_name=model + "_other"))
    history = fresh.history(HistoryRequest(model_name=model))
    assert sorted(r.monitoring_id for r in history.records) == sorted(ids)
    for i in range(5, 8):
        fresh.log(body(model, i))
    assert fresh.flush_mirror(60)
    client._handle = fresh.handle
    mlflow = MlflowClient(tracking_uri=settings.tracking_uri)
    exp = mlflow.get_experiment_by_name(EXPERIMENT)
    runs = mlflow.search_runs([exp.experiment_id], filter_string=f"tags.`{TAG_MODEL}` = '{model}' and tags.`{TAG_VERSION}` = '1'")
    assert len(runs) == 1  # one monitoring run per model version, reused after the restart
    hist = mlflow.get_metric_history(runs[0].info.run_id, "feature_drift.total_orders.psi")
    assert sorted(m.step for m in hist) == list(range(8))  # no step logged twice, none lost
    assert sorted(m.value for m in hist) == pytest.approx([i / 100 for i in range(8)])
    assert all(m.timestamp > 0 for m in hist)
