"""Batch scoring on the gold layer: features read from pinned Iceberg snapshots, predictions appended
to an Iceberg table once per job (real S3 server, SQLite catalog, MLflow and local Ray)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from asgard_ray.config import Settings
from asgard_ray.errors import Conflict, InvalidRequest, NotFound
from asgard_ray.gold import catalog_properties, gold_catalog, resolve_table, write_table
from asgard_ray.scoring import BatchScoreRequest, BatchScoringService, read_manifest, read_scored_rows
from asgard_ray.scoring.plan import prepare_plan
from asgard_ray.scoring.runner import run_scoring
from asgard_ray.storage import list_files
from tests.integration.test_scoring import FEATURES, register_churn_model

pytestmark = pytest.mark.integration

MODEL = "gold_scoring_churn"
VIEW = "scoring_pin_view"
FEATURE_TABLE = "scoring_pin_features"
ENTITY_TABLE = "scoring_pin_entities"
NS = "scoring_preds"
CHANGED = list(range(1, 11))
"""Customers whose features the second snapshot of the feature table changes."""


def _feature_rows(ids: list[int], ts: str, bump: int) -> pd.DataFrame:
    rng = np.random.default_rng(len(ids) + bump)
    return pd.DataFrame(
        {
            "customer_id": np.asarray(ids, dtype="int64"),
            "event_timestamp": pd.Timestamp(ts, tz="UTC"),
            "total_orders": rng.integers(0, 30, len(ids)).astype("int64") + bump,
            "avg_order_value": np.round(rng.uniform(5, 90, len(ids)), 2),
            "days_since_last_order": rng.integers(0, 300, len(ids)).astype("int64") + bump,
        }
    )


@pytest.fixture(scope="module")
def pinned_table(settings: Settings, ray_session: None) -> dict[str, Any]:
    """This module's own feature table with two snapshots (B changes customers 1-10), and a view on it."""
    from asgard_ray.features import FeatureRegistry, FeatureViewSpec

    first = _feature_rows(list(range(1, 51)), "2025-07-01", 0)
    later = _feature_rows(CHANGED, "2025-10-15", 100)
    snap_a = write_table(settings, FEATURE_TABLE, first, summary={"test": "a"})
    snap_b = write_table(settings, FEATURE_TABLE, later, summary={"test": "b"})
    FeatureRegistry(settings).register(
        FeatureViewSpec.model_validate(
            {
                "name": VIEW,
                "entities": ["customer_id"],
                "features": [
                    {"name": "total_orders", "dtype": "int64"},
                    {"name": "avg_order_value", "dtype": "float64"},
                    {"name": "days_since_last_order", "dtype": "int64"},
                ],
                "source": {"table_name": FEATURE_TABLE, "timestamp_field": "event_timestamp"},
            }
        )
    )
    return {"a": snap_a, "b": snap_b, "first": first, "later": later}


@pytest.fixture(scope="module")
def model(settings: Settings, customer_features: str) -> str:
    return register_churn_model(settings, MODEL)


@pytest.fixture(scope="module")
def scoring(settings: Settings, ray_session: None) -> BatchScoringService:
    return BatchScoringService(settings)


def _body(version: str, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model_name": MODEL,
        "model_version": version,
        "feature_views": [VIEW],
        "entities_df": {"customer_id": list(range(1, 51))},
    }
    body.update(over)
    return body


def _table_snapshots(settings: Settings, ident: str, job_id: str | None = None) -> list[Any]:
    table = gold_catalog(settings).load_table(tuple(ident.split(".")))
    snaps = list(table.snapshots())
    return [s for s in snaps if s.summary.get("asgard.job_id") == job_id] if job_id else snaps


def _read_table(settings: Settings, ident: str, snapshot_id: int) -> pd.DataFrame:
    import ray.data

    ds = ray.data.read_iceberg(
        table_identifier=ident, catalog_kwargs={"name": settings.trino_catalog, **catalog_properties(settings)}, snapshot_id=snapshot_id
    )
    return ds.to_pandas()


def _same_rows(table_rows: pd.DataFrame, parquet_rows: pd.DataFrame) -> None:
    cols = [
        "customer_id",
        "event_timestamp",
        *FEATURES,
        "prediction",
        "prediction_proba",
        "proba_0",
        "proba_1",
        "model_name",
        "run_id",
        "job_id",
        "scored_at",
    ]
    got = table_rows.sort_values("customer_id").reset_index(drop=True)
    want = parquet_rows.sort_values("customer_id").reset_index(drop=True)
    assert len(got) == len(want)
    pd.testing.assert_frame_equal(got[cols], want[cols], check_dtype=False)
    assert got["model_version"].astype(str).tolist() == want["model_version"].astype(str).tolist()
    assert got["score_date"].astype(str).tolist() == want["score_date"].astype(str).tolist()


def test_table_output_one_snapshot_per_job_and_a_retry_appends_nothing(
    settings: Settings, scoring: BatchScoringService, model: str, pinned_table: dict[str, Any]
) -> None:
    ident = f"{NS}.churn"
    request = BatchScoreRequest.model_validate(_body(model, output_path="s3://asgard/test-scoring-gold/both", output_table=ident))
    plan = prepare_plan(settings, request, "gold-both-1")
    result = run_scoring(settings, plan, track=False)
    sid = result["output_snapshot_id"]
    mine = _table_snapshots(settings, ident, "gold-both-1")
    assert [s.snapshot_id for s in mine] == [sid]
    summary = mine[0].summary
    assert summary.get("asgard.model_version") == model and summary.get("asgard.run_id") == plan.model.run_id
    assert summary.get("added-records") == "50"
    manifest = read_manifest(settings, "s3://asgard/test-scoring-gold/both")
    assert manifest.output_table == ident and manifest.output_snapshot_id == sid and manifest.feature_views == [VIEW]
    assert manifest.feature_snapshots == {FEATURE_TABLE: pinned_table["b"]} == result["feature_snapshots"]
    _same_rows(_read_table(settings, ident, sid), read_scored_rows(settings, "s3://asgard/test-scoring-gold/both"))

    # the same job again (a retry of the same plan): nothing appended, the same snapshot reported
    before = len(_table_snapshots(settings, ident))
    again = run_scoring(settings, plan, track=False)
    assert again["output_snapshot_id"] == sid and len(_table_snapshots(settings, ident)) == before

    # a second job is a second snapshot, with only its rows
    second = scoring.submit(
        BatchScoreRequest.model_validate(_body(model, output_path="s3://asgard/test-scoring-gold/both2", output_table=ident))
    )
    assert second.status == "completed", second.error
    assert second.output_table == ident
    assert len(_table_snapshots(settings, ident)) == before + 1
    sid2 = read_manifest(settings, second.job_id).output_snapshot_id
    assert sid2 is not None and sid2 != sid
    rows = _read_table(settings, ident, sid2)
    assert len(rows) == 100 and rows.groupby("job_id").size().to_dict() == {"gold-both-1": 50, second.job_id: 50}


def test_table_only_output_stages_parquet_and_commits_once(
    settings: Settings, scoring: BatchScoringService, model: str, pinned_table: dict[str, Any]
) -> None:
    ident = f"{NS}.only"
    resp = scoring.submit(BatchScoreRequest.model_validate(_body(model, output_table=ident, job_id="gold-only-1")))
    assert resp.status == "completed", resp.error
    assert resp.output_path.startswith(settings.s3_uri("predictions-staging")) and resp.output_table == ident
    manifest = read_manifest(settings, "gold-only-1")
    assert not manifest.output_parquet and manifest.output_snapshot_id is not None
    _same_rows(_read_table(settings, ident, manifest.output_snapshot_id), read_scored_rows(settings, "gold-only-1"))
    # a resubmission with the same job id finds its commit: still one snapshot
    again = scoring.submit(BatchScoreRequest.model_validate(_body(model, output_table=ident, job_id="gold-only-1")))
    assert again.status == "completed" and len(_table_snapshots(settings, ident)) == 1


def test_failure_between_the_two_commits_is_finished_by_a_retry(settings: Settings, model: str, pinned_table: dict[str, Any]) -> None:
    """The Parquet output commits, the table append fails; re-running the job appends once and records it."""
    ident, out = f"{NS}.broken", "s3://asgard/test-scoring-gold/broken"
    plan = prepare_plan(settings, BatchScoreRequest.model_validate(_body(model, output_path=out, output_table=ident)), "gold-broken-1")
    write_table(settings, "broken", pd.DataFrame({"x": [1]}), namespace=NS)  # a table the rows do not fit, made after the plan
    with pytest.raises(Exception, match=r"(?i)schema|field|column"):
        run_scoring(settings, plan, track=False)
    manifest = read_manifest(settings, out)  # the Parquet output stays committed
    assert manifest.job_id == "gold-broken-1" and manifest.total_rows == 50 and manifest.output_snapshot_id is None
    gold_catalog(settings).drop_table((NS, "broken"))
    result = run_scoring(settings, plan, track=False)
    assert len(_table_snapshots(settings, ident, "gold-broken-1")) == 1 == len(_table_snapshots(settings, ident))
    assert read_manifest(settings, out).output_snapshot_id == result["output_snapshot_id"] is not None
    _same_rows(_read_table(settings, ident, result["output_snapshot_id"]), read_scored_rows(settings, out))
    # a table whose columns differ is refused before the job runs
    write_table(settings, "other", pd.DataFrame({"x": [1]}), namespace=NS)
    with pytest.raises(Conflict, match="columns"):
        prepare_plan(settings, BatchScoreRequest.model_validate(_body(model, output_table=f"{NS}.other")), "gold-other-1")


def test_pinned_snapshot_differs_from_current_only_where_the_table_changed(
    settings: Settings, scoring: BatchScoringService, model: str, pinned_table: dict[str, Any]
) -> None:
    current = scoring.submit(BatchScoreRequest.model_validate(_body(model, output_path="s3://asgard/test-scoring-gold/current")))
    pinned = scoring.submit(
        BatchScoreRequest.model_validate(
            _body(model, output_path="s3://asgard/test-scoring-gold/pinned", as_of_snapshot={FEATURE_TABLE: pinned_table["a"]})
        )
    )
    assert current.status == pinned.status == "completed"
    assert read_manifest(settings, current.job_id).feature_snapshots == {FEATURE_TABLE: pinned_table["b"]}
    assert read_manifest(settings, pinned.job_id).feature_snapshots == {FEATURE_TABLE: pinned_table["a"]}
    cur = read_scored_rows(settings, current.job_id).set_index("customer_id").sort_index()
    pin = read_scored_rows(settings, pinned.job_id).set_index("customer_id").sort_index()
    first = pinned_table["first"].set_index("customer_id").sort_index()
    later = pinned_table["later"].set_index("customer_id").sort_index()
    unchanged = [i for i in range(1, 51) if i not in CHANGED]
    # the old snapshot: every customer's first load; the current one: the later load for the changed ones
    pd.testing.assert_frame_equal(pin[FEATURES], first[FEATURES], check_dtype=False)
    pd.testing.assert_frame_equal(cur.loc[CHANGED, FEATURES], later[FEATURES], check_dtype=False)
    pd.testing.assert_frame_equal(cur.loc[unchanged, FEATURES], pin.loc[unchanged, FEATURES])
    assert cur.loc[unchanged, "prediction_proba"].tolist() == pin.loc[unchanged, "prediction_proba"].tolist()
    assert (cur.loc[CHANGED, "total_orders"] >= 100).all() and (pin.loc[CHANGED, "total_orders"] < 100).all()


def test_entity_table_resolves_through_the_gold_layer(
    settings: Settings, scoring: BatchScoringService, model: str, pinned_table: dict[str, Any]
) -> None:
    ents = pd.DataFrame({"customer_id": np.arange(1, 31, dtype="int64"), "event_timestamp": pd.Timestamp("2025-12-01", tz="UTC")})
    snap = write_table(settings, ENTITY_TABLE, ents)
    write_table(settings, ENTITY_TABLE, ents.assign(customer_id=ents["customer_id"] + 100))  # a later load, not read when pinned
    resp = scoring.submit(
        BatchScoreRequest.model_validate(
            {
                "model_name": MODEL,
                "model_version": model,
                "feature_views": [VIEW],
                "entities_source": {"table_name": ENTITY_TABLE},
                "as_of_snapshot": {ENTITY_TABLE: snap},
                "output_path": "s3://asgard/test-scoring-gold/entity-table",
            }
        )
    )
    assert resp.status == "completed", resp.error
    manifest = read_manifest(settings, resp.job_id)
    assert manifest.total_rows == 30 and manifest.entities["input"] == f"{settings.gold_schema}.{ENTITY_TABLE}"
    assert manifest.feature_snapshots == {FEATURE_TABLE: pinned_table["b"], ENTITY_TABLE: snap}
    out = read_scored_rows(settings, resp.job_id)
    assert sorted(out["customer_id"]) == list(range(1, 31))
    assert resolve_table(settings, ENTITY_TABLE).snapshot_id != snap


def test_request_validation(settings: Settings, scoring: BatchScoringService, model: str, pinned_table: dict[str, Any]) -> None:
    def submit(**over: Any) -> None:
        scoring.submit(BatchScoreRequest.model_validate(_body(model, **{"output_path": "s3://asgard/test-scoring-gold/invalid", **over})))

    with pytest.raises(ValidationError, match="output_path"):
        BatchScoreRequest.model_validate({"model_name": MODEL, "entities_df": {"customer_id": [1]}})
    for bad in ("churn", "a.b.c", "ns.bad-name", "1ns.t", "ns."):
        with pytest.raises(ValidationError, match="output_table"):
            BatchScoreRequest.model_validate(_body(model, output_table=bad))
    with pytest.raises(ValidationError, match="as_of_snapshot"):
        BatchScoreRequest.model_validate(_body(model, output_path="s3://asgard/x", as_of_snapshot={FEATURE_TABLE: "latest"}))
    with pytest.raises(NotFound, match="no snapshot 12345"):
        submit(as_of_snapshot={FEATURE_TABLE: 12345})
    with pytest.raises(InvalidRequest, match="customer_aggregates"):
        submit(as_of_snapshot={"customer_aggregates": pinned_table["a"]})
    assert not list_files(settings, "s3://asgard/test-scoring-gold/invalid")
