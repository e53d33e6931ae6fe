"""No lost update: parallel registrations against a real MLflow server and a real Feast registry on S3.

Before the fix, 8 parallel registrations of one run made several versions (MLflow's
``create_model_version`` has no uniqueness on the run) and the concurrent first creation of the
model answered 500; parallel Feast ``apply`` calls of different views each rewrote ``registry.pb``
whole, so a view could be lost. Threads released together by a barrier hit the servers at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import mlflow
import pytest

from asgard_ray import lineage
from asgard_ray.config import Settings
from asgard_ray.features import FeatureRegistry, FeatureViewSpec
from asgard_ray.features.specs import SEED_EXAMPLE
from asgard_ray.registry import ModelRegistry, RegisterModelRequest
from asgard_ray.registry.schemas import RegisterModelResponse

pytestmark = pytest.mark.integration

T = TypeVar("T")
N_REGISTRATIONS = 8
N_VIEWS = 6


def _together(n: int, call: Callable[[int], T]) -> list[T]:
    """Run ``call(i)`` for i < n on n threads released at the same moment; re-raise the first error."""
    barrier = threading.Barrier(n, timeout=60)

    def one(i: int) -> T:
        barrier.wait()
        return call(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return [f.result(timeout=300) for f in [pool.submit(one, i) for i in range(n)]]


@pytest.fixture(scope="module")
def finished_run(settings: Settings) -> str:
    """A FINISHED MLflow run holding a small logged sklearn model and one lineage tag."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from asgard_ray.training.estimators import log_model
    from asgard_ray.training.tracking import ensure_experiment

    mlflow.set_tracking_uri(settings.tracking_uri)
    experiment_id = ensure_experiment(settings, "faults_races")
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    model = LogisticRegression().fit(X, [0, 0, 1, 1])
    with mlflow.start_run(experiment_id=experiment_id, tags={lineage.TAG_LABEL: "churned"}) as run:
        log_model("sklearn", model, lineage.MODEL_ARTIFACT, None, None)
    return run.info.run_id


def test_parallel_registrations_of_one_run_make_one_version(settings: Settings, finished_run: str) -> None:
    name = "faults_race_one_version"  # new: the registered model's first creation is raced too
    registry = ModelRegistry(settings)

    def register(i: int) -> RegisterModelResponse:
        tags = {"attempt": str(i)}
        return registry.register(RegisterModelRequest(model_name=name, run_id=finished_run, tags=tags))

    answers = _together(N_REGISTRATIONS, register)

    assert {a.version for a in answers} == {answers[0].version}
    assert sorted(a.status for a in answers).count("registered") == 1
    client = mlflow.MlflowClient(tracking_uri=settings.tracking_uri)
    versions = client.search_model_versions(f"name='{name}'")
    assert [str(v.version) for v in versions] == [answers[0].version]
    assert versions[0].run_id == finished_run
    assert versions[0].tags[lineage.TAG_LABEL] == "churned"
    # later registrations of the same run still answer the one version
    again = registry.register(RegisterModelRequest(model_name=name, run_id=finished_run))
    assert (again.status, again.version) == ("already_registered", answers[0].version)


def test_rollback_never_removes_a_model_that_has_versions(settings: Settings, finished_run: str) -> None:
    name = "faults_race_rollback"
    registry = ModelRegistry(settings)
    first = registry.register(RegisterModelRequest(model_name=name, run_id=finished_run))
    registry._drop_if_empty(name)  # what a failed parallel request that created the model would run
    assert registry.get_model(name).latest_version == first.version
    client = mlflow.MlflowClient(tracking_uri=settings.tracking_uri)
    client.create_registered_model("faults_race_empty")
    registry._drop_if_empty("faults_race_empty")  # its own, still empty: removed
    assert not client.search_registered_models(filter_string="name='faults_race_empty'")


def test_parallel_feature_view_registrations_keep_every_view(settings: Settings, ray_session: None) -> None:
    names = [f"faults_race_view_{i}" for i in range(N_VIEWS)]
    registry = FeatureRegistry(settings)

    def register(i: int) -> Any:
        return registry.register(FeatureViewSpec.model_validate({**SEED_EXAMPLE, "name": names[i]}))

    try:
        answers = _together(N_VIEWS, register)
        assert [a.status for a in answers] == ["registered"] * N_VIEWS
        listed = {v.name for v in FeatureRegistry(settings).list().feature_views}
        assert set(names) <= listed, sorted(set(names) - listed)
        # and the same again is "unchanged" for every one, in parallel too
        assert [a.status for a in _together(N_VIEWS, register)] == ["unchanged"] * N_VIEWS
    finally:
        for name in names:
            try:
                registry.delete(name)
            except Exception:
                pass
    listed = {v.name for v in FeatureRegistry(settings).list().feature_views}
    assert not set(names) & listed
