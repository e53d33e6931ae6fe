"""Training semantics and the warehouse boundary (issue 23), on the live stack.

- A target that is a key, a timestamp or a feature of a requested view is a 422 naming the rule,
  before any job, run or model exists; so is a label the model type cannot learn.
- Every column of the demo table as the target, with both model types and all three frameworks,
  ends in a 200 whose ``feature_columns`` lack the label, or in a 4xx: never a 5xx.
- No write reaches platform state: the Iceberg warehouse and every other state location the
  settings name are refused as ``output_path``, and nothing appears under them.
- Parallel registrations of one run make exactly one version, and the next run gets the next number.
"""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any

import pytest

from tests.security.conftest import World, log_model_run
from tests.security.test_hostile_input import assert_unchanged, check_error, score

pytestmark = [pytest.mark.e2e]

DEMO_COLUMNS = (
    "customer_id",
    "event_timestamp",
    "total_orders",
    "avg_order_value",
    "days_since_last_order",
    "support_tickets",
    "tenure_days",
    "total_spend",
    "churned",
)
FEATURES = ("total_orders", "avg_order_value", "days_since_last_order")


def train_body(target: str, *, framework: str = "lightgbm", model_type: str = "regression", model: str = "sec_target") -> dict[str, Any]:
    params = {"n_estimators": 5, "random_state": 0} | ({"min_child_samples": 2} if framework == "lightgbm" else {})
    return {
        "experiment_name": "security_targets",
        "model_name": model,
        "framework": framework,
        "model_type": model_type,
        "data_source": {
            "feature_views": ["customer_features"],
            "entities": {"customer_id": list(range(1, 41))},
            "target_column": target,
        },
        "hyperparameters": {"params": params},
    }


def _runs(w: World, model: str) -> int:
    experiment = w.mlflow.get_experiment_by_name("security_targets")
    if experiment is None:
        return 0
    return len(w.mlflow.search_runs([experiment.experiment_id], filter_string=f"tags.`asgard.model_name` = '{model}'"))


@pytest.mark.parametrize(
    ("target", "model_type", "needle"),
    [
        ("total_orders", "regression", "feature of view customer_features"),
        ("customer_id", "regression", "join key"),
        ("event_timestamp", "classification", "timestamp"),
        ("no_such_column", "classification", "not a column"),
        ("total_spend", "classification", "fractional"),
    ],
)
def test_a_target_that_is_no_label_is_422_before_any_run(world: World, target: str, model_type: str, needle: str) -> None:
    model = f"sec_target_{target}"
    before, runs = world.snapshot(), _runs(world, model)
    r = world.http.post("/mlops/models", json=train_body(target, model_type=model_type, model=model))
    check_error(r, frozenset({422}), (needle,))
    assert target in r.json()["error"]
    assert _runs(world, model) == runs, "a refused request left an MLflow run"
    assert_unchanged(before, world.snapshot())


def test_every_column_as_target_is_a_model_without_its_label_or_a_4xx(world: World) -> None:
    """Each demo column x both model types x all three frameworks: 200 without the label as input, or a 4xx."""
    outcomes: dict[tuple[str, str, str], int] = {}
    deadline = time.monotonic() + 600
    for framework in ("sklearn", "xgboost", "lightgbm"):
        for model_type in ("classification", "regression"):
            for target in DEMO_COLUMNS:
                assert time.monotonic() < deadline, f"the sweep overran its time bound; done so far: {outcomes}"
                r = world.http.post("/mlops/models", json=train_body(target, framework=framework, model_type=model_type, model=f"sec_sweep_{framework}"))
                outcomes[(framework, model_type, target)] = r.status_code
                assert r.status_code < 500, f"{framework}/{model_type}/{target}: {r.status_code} {r.text[:500]}"
                if r.status_code == 200:
                    body = r.json()
                    assert target not in body["feature_columns"], (framework, model_type, target, body["feature_columns"])
                    assert set(body["feature_columns"]) == set(FEATURES)
                else:
                    assert 400 <= r.status_code < 500 and r.json()["error"], r.text
    # the keys, timestamps and features are always refused; a numeric label always trains as a regression
    for framework in ("sklearn", "xgboost", "lightgbm"):
        for model_type in ("classification", "regression"):
            for target in ("customer_id", "event_timestamp", *FEATURES):
                assert outcomes[(framework, model_type, target)] == 422
        for target in ("support_tickets", "tenure_days", "total_spend", "churned"):
            assert outcomes[(framework, "regression", target)] == 200, outcomes
        assert outcomes[(framework, "classification", "churned")] == 200


def _keys(w: World, bucket: str, prefix: str) -> list[str]:
    return [o["Key"] for o in w.s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]


@pytest.mark.parametrize(
    "output_path",
    [
        "s3://asgard/warehouse/gold/h2_new",
        "s3://asgard/warehouse/predictions/x",
        "s3://asgard/warehouse",
        "s3://asgard/registry/x",
        "s3://asgard/training/x",
        "s3://asgard/predictions-staging/x",
        "s3://asgard/gold/new_table",
        "s3://asgard/jobs/batch_scoring",
    ],
)
def test_state_locations_are_never_an_output(world: World, output_path: str) -> None:
    bucket, _, prefix = output_path.removeprefix("s3://").partition("/")
    before_keys = _keys(world, bucket, prefix)
    before = world.snapshot()
    r = world.http.post("/mlops/serve/batch", json=score(output_path, overwrite=True)(world))
    check_error(r, frozenset({422}), ("holds platform state",))
    assert "output_path" in r.json()["error"]
    assert _keys(world, bucket, prefix) == before_keys, "an object appeared under a state location"
    assert_unchanged(before, world.snapshot())


def test_parallel_registrations_of_one_run_make_one_version_and_the_next_run_the_next(world: World) -> None:
    """20 parallel registrations of one run: versions [1]; a second run then registers as version 2."""
    name = f"sec_race_{int(time.time())}"
    first, second = log_model_run(world.env), log_model_run(world.env)

    def register(run_id: str) -> Any:
        return world.http.post("/mlops/registry", json={"model_name": name, "run_id": run_id})

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(register, [first] * 20))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] * 19 + [201] or codes.count(201) == 1, [(a.status_code, a.text[:200]) for a in answers]
    assert {a.json()["version"] for a in answers} == {"1"}
    assert sorted(int(v.version) for v in world.mlflow.search_model_versions(f"name='{name}'")) == [1]
    r = register(second)
    assert r.status_code in (200, 201) and r.json()["version"] == "2", r.text
    assert sorted(int(v.version) for v in world.mlflow.search_model_versions(f"name='{name}'")) == [1, 2]


def test_a_default_data_parallel_request_runs_on_the_embedded_stack_and_an_impossible_one_is_422(world: World) -> None:
    """The defaults (2 workers x 1 CPU) fit the 2-CPU embedded stack; 3 workers never could."""
    body = train_body("churned", framework="xgboost", model_type="classification", model="sec_dp_default")
    body["data_source"]["entities"] = {"customer_id": list(range(1, 301))}
    body["execution"] = {"mode": "distributed"}
    r = world.http.post("/mlops/models", json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["execution"]["mode"] == "distributed" and answer["execution"]["num_workers"] == 2
    assert "churned" not in answer["feature_columns"] and "roc_auc" in answer["metrics"]["metrics"]

    before, runs = world.snapshot(), _runs(world, "sec_dp_impossible")
    body["model_name"], body["execution"] = "sec_dp_impossible", {"mode": "distributed", "num_workers": 3}
    r = world.http.post("/mlops/models", json=body)
    check_error(r, frozenset({422}), ("could never start",))
    assert "3 CPUs" in r.json()["error"] and "ASGARD_TRAIN_CPUS_PER_WORKER" in r.json()["error"]
    assert _runs(world, "sec_dp_impossible") == runs
    assert_unchanged(before, world.snapshot())
