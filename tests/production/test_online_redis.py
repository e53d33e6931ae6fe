"""Redis as Feast's online store: materialize, predict in real time, restart Redis, predict again.

The stack runs with ``FEAST_ONLINE_STORE=redis`` against a password-protected Redis (append-only
file, fsync per write). The checks read Redis itself, so a silent fall back to SQLite would fail them.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.production.conftest import MODEL, ProdStack
from tests.production.workflow import SeedRun, call

pytestmark = [pytest.mark.production, pytest.mark.timeout(900)]

ENTITIES = [1, 2, 3]
UNKNOWN = 99_999_999
FEATURES = ("total_orders", "avg_order_value", "days_since_last_order")


def _redis(stack: ProdStack) -> Any:
    import redis

    port = int(stack.settings.feast_redis_connection_string.get_secret_value().split(",")[0].rsplit(":", 1)[1])  # type: ignore[union-attr]
    return redis.Redis(host="127.0.0.1", port=port, password=stack.redis_password, socket_timeout=5)


def _predict(stack: ProdStack, path: str) -> dict[str, Any]:
    body = {"model_name": MODEL, "feature_views": ["customer_features"], "entities": {"customer_id": [*ENTITIES, UNKNOWN]}}
    with stack.client(timeout=300) as api:
        return call(api, "POST", path, body)


def _by_entity(answer: dict[str, Any]) -> dict[int, tuple[Any, dict[str, Any]]]:
    return {row["entity"]["customer_id"]: (row["prediction"], row["features"]) for row in answer["predictions"]}


def test_materialize_predict_restart_redis_predict_again(prod_stack: ProdStack, seed: SeedRun) -> None:
    from asgard_ray.scoring.manifest import read_scored_rows

    with prod_stack.client() as api:
        job = call(api, "POST", "/feast/materialize", {"feature_views": ["customer_features"]})
    assert job["status"] == "completed", job
    assert job["result"]["online_store"] == "redis", job
    loaded = job["result"]["feature_views"][0]["rows"]
    assert loaded >= 1000, job

    r = _redis(prod_stack)
    keys = r.dbsize()
    assert keys >= loaded, (keys, loaded)  # one hash per entity key in Redis, nothing in a SQLite file
    assert not (prod_stack.settings.feast_repo / "online_store.db").exists()

    control = _predict(prod_stack, "/mlops/serve")
    direct = _predict(prod_stack, f"/predict/{MODEL}")
    for answer in (control, direct):
        assert answer["model_version"] == seed.version, answer
        assert answer["missing_entities"] == [{"customer_id": UNKNOWN}], answer
        rows = _by_entity(answer)
        assert sorted(rows) == ENTITIES, answer
        assert all(all(feats[f] is not None for f in FEATURES) for _, feats in rows.values()), answer
    assert _by_entity(control) == _by_entity(direct)

    # the online values are the latest gold rows, as batch scoring read them
    scored = read_scored_rows(prod_stack.settings, seed.batch_job_id).set_index("customer_id")
    for cid, (prediction, feats) in _by_entity(control).items():
        for f in FEATURES:
            assert feats[f] == pytest.approx(float(scored.loc[cid, f])), (cid, f, feats, scored.loc[cid].to_dict())
        assert prediction == scored.loc[cid, "prediction"], (cid, prediction, scored.loc[cid].to_dict())

    # restart Redis: same port, same folder; its append-only file brings every key back
    prod_stack.redis.restart()
    assert _redis(prod_stack).dbsize() == keys
    again = _predict(prod_stack, "/mlops/serve")  # the replica's pooled connection died with the old server
    assert _by_entity(again) == _by_entity(control), (again, control)
    assert again["missing_entities"] == [{"customer_id": UNKNOWN}]
    assert _by_entity(_predict(prod_stack, f"/predict/{MODEL}")) == _by_entity(control)
