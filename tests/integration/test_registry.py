"""The model registry against a real MLflow server: register (idempotent), list, describe, aliases, resolve."""

from __future__ import annotations

import json

import mlflow
import pytest

from asgard_ray import lineage
from asgard_ray.config import Settings
from asgard_ray.errors import InvalidRequest, NotFound
from asgard_ray.features import TrainingFrame
from asgard_ray.registry import ModelRegistry, RegisterModelRequest, resolve_model_version
from asgard_ray.training import TrainResponse
from tests.integration.test_training import frame, request_body, train_frame  # noqa: F401 - fixture

pytestmark = pytest.mark.integration

NAME = "it_registry_churn"


@pytest.fixture(scope="module")
def runs(settings: Settings, customer_features: str, frame: TrainingFrame) -> list[TrainResponse]:  # noqa: F811
    """Two finished training runs of the same model."""
    body = request_body(customer_features, model_name=NAME, experiment_name="it_registry",
                        hyperparameters={"params": {"n_estimators": 5, "max_depth": 4}})
    return [train_frame(settings, body, frame) for _ in range(2)]


def test_register_is_idempotent_per_run_and_copies_lineage(settings: Settings, runs: list[TrainResponse]) -> None:
    registry = ModelRegistry(settings)
    first = registry.register(RegisterModelRequest(model_name=NAME, run_id=runs[0].run_id, description="v1",
                                                   tags={"validated": "true"}))
    assert first.status == "registered" and first.model_uri == f"models:/{NAME}/{first.version}"
    again = registry.register(RegisterModelRequest(model_name=NAME, run_id=runs[0].run_id))
    assert again.status == "already_registered" and again.version == first.version
    second = registry.register(RegisterModelRequest(model_name=NAME, run_id=runs[1].run_id, description="v2"))
    assert int(second.version) == int(first.version) + 1

    detail = registry.get_model(NAME)
    assert [v.version for v in detail.versions] == [second.version, first.version]
    assert detail.latest_version == second.version and detail.latest_run_id == runs[1].run_id
    v1 = detail.versions[1]
    assert v1.run_id == runs[0].run_id and v1.description == "v1" and v1.tags["validated"] == "true"
    assert json.loads(v1.tags[lineage.TAG_FEATURE_COLUMNS]) == ["total_orders", "avg_order_value", "days_since_last_order"]
    for tag in (lineage.TAG_FEATURE_VIEWS, lineage.TAG_LABEL, lineage.TAG_FRAMEWORK, lineage.TAG_CLASSES,
                lineage.TAG_ENTITY_HASH, lineage.TAG_TRAINING_ROWS, lineage.TAG_JOIN_KEYS, lineage.TAG_FEAST_REGISTRY_VERSION):
        assert tag in v1.tags
    assert v1.metrics["roc_auc"] == pytest.approx(runs[0].metrics.metrics["roc_auc"])

    listed = {m.name: m for m in registry.list_models().models}
    assert listed[NAME].latest_version == second.version


def test_aliases_and_resolution(settings: Settings, runs: list[TrainResponse]) -> None:
    registry = ModelRegistry(settings)
    v1 = registry.register(RegisterModelRequest(model_name=NAME, run_id=runs[0].run_id)).version
    alias = registry.set_alias(NAME, "champion", v1)
    assert alias.version == v1 and alias.model_uri == f"models:/{NAME}@champion"
    assert registry.get_model(NAME).aliases == {"champion": v1}

    version, run_id, model_uri, tags = resolve_model_version(settings, NAME, "champion")
    assert (version, run_id, model_uri) == (v1, runs[0].run_id, f"models:/{NAME}/{v1}")
    assert tags[lineage.TAG_LABEL] == "churned"
    latest = resolve_model_version(settings, NAME, "latest")
    assert latest.version == registry.get_model(NAME).latest_version
    assert resolve_model_version(settings, NAME, None).version == latest.version
    assert resolve_model_version(settings, NAME, int(v1)).run_id == runs[0].run_id

    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    frame = {"total_orders": [3], "avg_order_value": [50.0], "days_since_last_order": [30]}  # the view's types
    import pandas as pd

    assert len(model.predict(pd.DataFrame(frame))) == 1
    removed = registry.delete_alias(NAME, "champion")
    assert removed.version == v1
    with pytest.raises(NotFound):
        resolve_model_version(settings, NAME, "champion")


@pytest.mark.parametrize(
    ("call", "error", "needle"),
    [
        (lambda r: r.get_model("no_such_model"), NotFound, "no_such_model"),
        (lambda r: r.register(RegisterModelRequest(model_name=NAME, run_id="0" * 32)), NotFound, "0000"),
        (lambda r: r.set_alias(NAME, "champion", "999"), NotFound, "999"),
        (lambda r: r.set_alias(NAME, "v2", "1"), InvalidRequest, "v2"),
        (lambda r: r.set_alias("no_such_model", "champion", "1"), NotFound, "no_such_model"),
    ],
)
def test_unknown_things_are_404_and_bad_aliases_422(settings: Settings, runs: list[TrainResponse], call, error: type, needle: str) -> None:  # noqa: ANN001
    with pytest.raises(error, match=needle):
        call(ModelRegistry(settings))


def test_run_without_model_or_unfinished_is_422(settings: Settings) -> None:
    from asgard_ray.training.tracking import ensure_experiment

    client = mlflow.MlflowClient(tracking_uri=settings.tracking_uri)
    experiment_id = ensure_experiment(settings, "it_registry_bare")
    bare = client.create_run(experiment_id)
    with pytest.raises(InvalidRequest, match="RUNNING"):
        ModelRegistry(settings).register(RegisterModelRequest(model_name="it_bare", run_id=bare.info.run_id))
    client.set_terminated(bare.info.run_id)
    with pytest.raises(InvalidRequest, match="no logged model"):
        ModelRegistry(settings).register(RegisterModelRequest(model_name="it_bare", run_id=bare.info.run_id))
    with pytest.raises(NotFound):
        ModelRegistry(settings).get_model("it_bare")  # nothing half-made left behind
