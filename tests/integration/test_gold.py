"""The gold layer on Iceberg as the feature store sees it: the demo table, registration, schema
evolution, materialization from a pinned snapshot, and Ray Data's ``write_iceberg`` column bug.

Real S3 server (moto), real SQLite catalog under the session's home, real Feast registry on S3 and
SQLite online store, real Ray.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from asgard_ray.config import Settings
from asgard_ray.errors import InvalidRequest, NotFound
from asgard_ray.features import FeatureRegistry, FeatureViewSpec, feature_store
from asgard_ray.gold import catalog_properties, gold_catalog, resolve_table, write_table
from asgard_ray.local.demo_data import CUSTOMER_TABLE, LOAD_KEY, SNAPSHOTS, load_label, write_customer_aggregates
from asgard_ray.storage import resolve
from tests.conftest import SEED_FEATURE_SPEC

pytestmark = pytest.mark.integration

ICEBERG_SOURCE = "feast.infra.data_sources.contrib.iceberg_catalog.iceberg_source.IcebergSource"


def _name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def _registry_bytes(settings: Settings) -> bytes:
    fs, path = resolve(settings, settings.s3_uri("feast", "registry.pb"))
    with fs.open_input_stream(path) as f:
        return f.read()


def _spec(name: str, table: str = CUSTOMER_TABLE, **source: str) -> FeatureViewSpec:
    return FeatureViewSpec.model_validate({**SEED_FEATURE_SPEC, "name": name, "source": {"table_name": table, **source}})


# --- the demo table ---------------------------------------------------------------------------------


def test_demo_table_has_one_snapshot_per_monthly_load(settings: Settings) -> None:
    table = gold_catalog(settings).load_table((settings.gold_schema, CUSTOMER_TABLE))
    loads = [s.summary.get(LOAD_KEY) for s in table.snapshots() if s.summary]
    assert loads == [load_label(ts) for ts in SNAPSHOTS]
    assert table.properties["write.target-file-size-bytes"] == str(settings.asgard_gold_target_file_mb * 1024 * 1024)
    # each snapshot holds the months loaded so far, 10,000 customers each
    for i, snap in enumerate(table.snapshots()):
        rows = table.scan(snapshot_id=snap.snapshot_id, selected_fields=("event_timestamp",)).to_arrow()
        assert rows.num_rows == 10_000 * (i + 1)
        assert pd.Timestamp(pa.compute.max(rows["event_timestamp"]).as_py()) == SNAPSHOTS[i]
    # idempotent: writing again commits nothing
    write_customer_aggregates(settings)
    assert len(gold_catalog(settings).load_table((settings.gold_schema, CUSTOMER_TABLE)).snapshots()) == len(SNAPSHOTS)


def test_demo_table_completes_an_interrupted_load_and_force_recreates(settings: Settings) -> None:
    name = _name("demo_copy")
    write_customer_aggregates(settings, 50, table_name=name)
    catalog = gold_catalog(settings)
    table = catalog.load_table((settings.gold_schema, name))
    assert len(table.snapshots()) == len(SNAPSHOTS)
    # a table that stopped after two loads gets the other two, not four more
    catalog.purge_table((settings.gold_schema, name))
    from asgard_ray.local.demo_data import customer_aggregates

    df = customer_aggregates(50)
    for ts in SNAPSHOTS[:2]:
        write_table(settings, name, df[df["event_timestamp"] == ts], summary={LOAD_KEY: load_label(ts)})
    write_customer_aggregates(settings, 50, table_name=name)
    table = catalog.load_table((settings.gold_schema, name))
    assert [s.summary.get(LOAD_KEY) for s in table.snapshots() if s.summary] == [load_label(ts) for ts in SNAPSHOTS]
    assert table.scan().to_arrow().num_rows == 50 * len(SNAPSHOTS)
    old_ids = {s.snapshot_id for s in table.snapshots()}
    write_customer_aggregates(settings, 50, table_name=name, force=True)
    table = catalog.load_table((settings.gold_schema, name))
    assert len(table.snapshots()) == len(SNAPSHOTS) and not old_ids & {s.snapshot_id for s in table.snapshots()}
    catalog.purge_table((settings.gold_schema, name))


# --- registration -----------------------------------------------------------------------------------


def test_registration_records_an_iceberg_source_without_secrets(settings: Settings, ray_session: None) -> None:
    from feast.infra.data_sources.contrib.iceberg_catalog.iceberg_source import IcebergSource
    from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto

    s3_secret = f"s3-secret-{uuid.uuid4().hex}"
    rest_secret = f"rest-secret-{uuid.uuid4().hex}"
    secret_settings = settings.model_copy(
        update={"aws_secret_access_key": s3_secret, "asgard_gold_catalog_credential": pa_secret(f"client:{rest_secret}")}
    )
    assert catalog_properties(secret_settings)["s3.secret-access-key"] == s3_secret  # the catalog has them
    name = _name("iceberg_view")
    out = FeatureRegistry(secret_settings).register(_spec(name))
    assert out.status == "registered"
    assert out.source.format == "iceberg"  # the resolved format is stored with the spec
    assert out.source_uri == f"iceberg://{settings.trino_catalog}/{settings.gold_schema}.{CUSTOMER_TABLE}"

    raw = _registry_bytes(settings)
    for secret in (s3_secret, rest_secret, settings.aws_secret_access_key):
        assert secret.encode() not in raw
    proto = RegistryProto()
    proto.ParseFromString(raw)
    [fv_proto] = [fv for fv in proto.feature_views if fv.spec.name == name]
    assert fv_proto.spec.batch_source.data_source_class_type == ICEBERG_SOURCE
    source = IcebergSource.from_proto(fv_proto.spec.batch_source)
    assert (source.namespace, source.iceberg_table, source.catalog_type, source.catalog_name) == (
        settings.gold_schema,
        CUSTOMER_TABLE,
        settings.asgard_gold_catalog,
        settings.trino_catalog,
    )
    assert source.warehouse == settings.gold_warehouse
    assert source.catalog_properties == catalog_properties(settings, secrets=False)
    assert "s3.secret-access-key" not in source.catalog_properties and "credential" not in source.catalog_properties
    assert source.timestamp_field == "event_timestamp"
    # Feast's own store reads it back as the same source
    fv = feature_store(settings).get_feature_view(name)
    assert isinstance(fv.batch_source, IcebergSource) and fv.batch_source == source
    # a re-registration that leaves format out is the same spec
    assert FeatureRegistry(settings).register(_spec(name)).status == "unchanged"
    assert FeatureRegistry(settings).register(_spec(name, format="iceberg")).status == "unchanged"
    FeatureRegistry(settings).delete(name)


def pa_secret(value: str):  # noqa: ANN201 - a SecretStr for the settings copy
    from pydantic import SecretStr

    return SecretStr(value)


def test_missing_table_is_404_and_missing_column_is_400(settings: Settings, ray_session: None) -> None:
    registry = FeatureRegistry(settings)
    with pytest.raises(NotFound, match="no_such_gold_table"):
        registry.register(_spec(_name("v"), table="no_such_gold_table"))
    with pytest.raises(NotFound, match="no_such_gold_table"):
        registry.register(_spec(_name("v"), table="no_such_gold_table", format="iceberg"))
    bad = FeatureViewSpec.model_validate(
        {**SEED_FEATURE_SPEC, "name": _name("v"), "features": [{"name": "not_a_column", "dtype": "int64"}]}
    )
    with pytest.raises(InvalidRequest, match="not_a_column") as err:
        registry.register(bad)
    detail = err.value.detail
    assert isinstance(detail, dict) and "total_orders" in detail["columns"]  # the columns come from the catalog's schema
    with pytest.raises(InvalidRequest, match="ts_nope"):
        registry.register(_spec(_name("v"), timestamp_field="ts_nope"))


def test_parquet_folder_still_registers(settings: Settings, ray_session: None) -> None:
    from feast import FileSource

    legacy = _name("legacy_aggregates")
    uri = write_customer_aggregates(settings, 100, format="parquet", table_name=legacy)
    assert uri == settings.gold_uri(legacy)
    registry = FeatureRegistry(settings)
    # format left out: not in the catalog, so the Parquet folder
    out = registry.register(_spec(_name("pq_view"), table=legacy))
    assert out.source.format == "parquet" and out.source_uri == uri
    fv = feature_store(settings).get_feature_view(out.name)
    assert isinstance(fv.batch_source, FileSource) and fv.batch_source.path == uri
    # format: parquet on the demo table's name: the Parquet folder of that name, not the Iceberg table
    write_customer_aggregates(settings, 100, format="parquet")
    out2 = registry.register(_spec(_name("pq_view2"), format="parquet"))
    assert out2.source.format == "parquet" and out2.source_uri == settings.gold_uri(CUSTOMER_TABLE)
    with pytest.raises(NotFound):
        registry.register(_spec(_name("pq_view3"), table=legacy, format="iceberg"))
    for name in (out.name, out2.name):
        registry.delete(name)


# --- schema evolution -------------------------------------------------------------------------------


def test_schema_evolution_keeps_old_snapshots_old(settings: Settings) -> None:
    from pyiceberg.types import DoubleType

    name = _name("evolving")
    ts = pd.Timestamp("2025-07-01", tz="UTC")
    first = pd.DataFrame(
        {"customer_id": np.arange(1, 6, dtype=np.int64), "event_timestamp": ts, "total_orders": np.arange(5, dtype=np.int64)}
    )
    old = write_table(settings, name, first)
    table = gold_catalog(settings).load_table((settings.gold_schema, name))
    with table.update_schema() as update:
        update.add_column("loyalty_score", DoubleType())
    second = first.assign(event_timestamp=pd.Timestamp("2025-08-01", tz="UTC"), loyalty_score=np.linspace(0, 1, 5))
    new = write_table(settings, name, second)
    assert new != old

    old_table = resolve_table(settings, name, snapshot_id=old)
    assert "loyalty_score" not in old_table.schema.names
    old_rows = old_table.read(settings)
    assert "loyalty_score" not in old_rows.column_names and old_rows.num_rows == 5

    current = resolve_table(settings, name)
    assert current.snapshot_id == new and "loyalty_score" in current.schema.names
    rows = current.read(settings).to_pandas().sort_values(["event_timestamp", "customer_id"])
    assert rows["loyalty_score"].isna().sum() == 5  # the old rows have no value
    np.testing.assert_allclose(rows["loyalty_score"].iloc[5:], np.linspace(0, 1, 5))

    # registration follows the pinned (current) schema: the new column is a feature now
    spec = FeatureViewSpec.model_validate(
        {
            "name": _name("evolved_view"),
            "entities": ["customer_id"],
            "features": [{"name": "loyalty_score", "dtype": "float64"}],
            "source": {"table_name": name},
        }
    )
    out = FeatureRegistry(settings).register_here(spec)
    assert out.status == "registered" and out.source.format == "iceberg"
    FeatureRegistry(settings).delete_here(out.name)
    gold_catalog(settings).purge_table((settings.gold_schema, name))


# --- materialization from a pinned snapshot ---------------------------------------------------------


def test_materialize_from_iceberg_puts_latest_values_online(settings: Settings, ray_session: None) -> None:
    from asgard_ray.serving.materialize import materialize

    name = _name("mat_source")
    rng = np.random.default_rng(7)
    n = 300
    stamps = pd.to_datetime(["2025-06-15", "2025-07-01", "2025-07-20", "2025-08-01", "2025-09-10", "2025-12-01"], utc=True)
    df = pd.DataFrame(
        {
            "customer_id": rng.integers(1, 60, n).astype(np.int64),
            "event_timestamp": stamps[rng.integers(0, len(stamps), n)],
            "total_orders": rng.integers(0, 100, n).astype(np.int64),
            "avg_order_value": rng.normal(50, 10, n).round(2),
            "days_since_last_order": rng.integers(0, 365, n).astype(np.int64),
        }
    )
    half = n // 2
    write_table(settings, name, df.iloc[:half])
    pinned = write_table(settings, name, df.iloc[half:])  # two data files: ties across them too
    view = _name("mat_view")
    FeatureRegistry(settings).register(_spec(view, table=name))

    start, end = datetime(2025, 7, 1, tzinfo=UTC), datetime(2025, 10, 1, tzinfo=UTC)
    result = materialize(settings, [view], start, end)
    [done] = result.feature_views
    assert done.snapshot_id == pinned and done.table_name == f"{settings.gold_schema}.{name}"

    # expected with pandas: rows in [start, end), the last one stored wins per key at the max event time
    window = df[(df["event_timestamp"] >= pd.Timestamp(start)) & (df["event_timestamp"] < pd.Timestamp(end))]
    window = window.reset_index().rename(columns={"index": "stored"})
    expected = window.loc[window.groupby("customer_id")["event_timestamp"].transform("max") == window["event_timestamp"]]
    expected = expected.sort_values("stored").groupby("customer_id").tail(1).set_index("customer_id").sort_index()
    assert done.rows == len(expected)
    assert (window.groupby(["customer_id", "event_timestamp"]).size() > 1).any()  # ties exist in the data

    ids = list(range(1, 61))
    feats = ["total_orders", "avg_order_value", "days_since_last_order"]
    online = (
        feature_store(settings)
        .get_online_features(features=[f"{view}:{f}" for f in feats], entity_rows=[{"customer_id": i} for i in ids])
        .to_df()
        .set_index("customer_id")
    )
    got = online.loc[expected.index, feats]
    pd.testing.assert_frame_equal(got, expected[feats], check_dtype=False)
    missing = sorted(set(ids) - set(expected.index))
    assert missing and online.loc[missing, feats].isna().all().all()  # keys with no row in the window stay empty

    # an append after the materialization is not seen until the next one; the next one names the new snapshot
    later = df.iloc[:5].assign(event_timestamp=pd.Timestamp("2025-09-30", tz="UTC"), total_orders=np.int64(999_999))
    newer = write_table(settings, name, later)
    again = materialize(settings, [view], start, end).feature_views[0]
    assert again.snapshot_id == newer
    refreshed = (
        feature_store(settings)
        .get_online_features(features=[f"{view}:total_orders"], entity_rows=[{"customer_id": int(i)} for i in later["customer_id"]])
        .to_df()
    )
    assert (refreshed["total_orders"] == 999_999).all()
    FeatureRegistry(settings).delete(view)


# --- Ray Data's write_iceberg column bug ------------------------------------------------------------


def _scored(batch: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": batch["customer_id"], "score": batch["total_orders"] * 0.5})


def _target(settings: Settings, name: str) -> str:
    schema = pa.schema([pa.field("customer_id", pa.int64()), pa.field("score", pa.float64())])
    gold_catalog(settings).create_table((settings.gold_schema, name), schema=schema)
    return f"{settings.gold_schema}.{name}"


def test_write_iceberg_after_materialize_keeps_the_target_schema(settings: Settings, ray_session: None) -> None:
    """The recipe for a Ray Data read -> transform -> Iceberg write: ``.materialize()`` before ``write_iceberg``.

    A streaming ``read_iceberg -> map_batches(batch_size=...) -> write_iceberg`` adds the source's
    columns to the target (Ray 2.60), filled with nulls: the batched map is fused into the write, so
    the write's schema evolution sees the read's first bundle. Materializing first, or
    ``gold.write_table`` of the result, leaves the target with exactly its columns.
    """
    import ray.data

    kwargs = {"name": settings.trino_catalog, **catalog_properties(settings)}
    source = resolve_table(settings, CUSTOMER_TABLE)
    ds = ray.data.read_iceberg(table_identifier=source.identifier, catalog_kwargs=kwargs, snapshot_id=source.snapshot_id)
    scored = ds.map_batches(_scored, batch_format="pandas", batch_size=5_000).materialize()

    target = _target(settings, _name("scored"))
    scored.write_iceberg(table_identifier=target, catalog_kwargs=kwargs)
    table = gold_catalog(settings).load_table(tuple(target.split(".")))
    assert [f.name for f in table.schema().fields] == ["customer_id", "score"]
    rows = table.scan().to_arrow()
    assert rows.num_rows == 40_000 and rows.column_names == ["customer_id", "score"]

    # the platform's one-commit write of the same rows: the same two columns
    name = _name("scored_platform")
    write_table(settings, name, pa.concat_tables(ray.get(scored.to_arrow_refs())))
    platform = resolve_table(settings, name)
    assert platform.schema.names == ["customer_id", "score"]
    assert platform.read(settings).num_rows == 40_000


def test_streaming_write_iceberg_still_adds_source_columns(settings: Settings, ray_session: None) -> None:
    """Sentinel for the Ray bug the recipe above avoids: if this fails, Ray fixed it and the workaround can go."""
    import ray.data

    kwargs = {"name": settings.trino_catalog, **catalog_properties(settings)}
    source = resolve_table(settings, CUSTOMER_TABLE)
    ds = ray.data.read_iceberg(table_identifier=source.identifier, catalog_kwargs=kwargs, snapshot_id=source.snapshot_id)
    target = _target(settings, _name("scored_streaming"))
    ds.map_batches(_scored, batch_format="pandas", batch_size=5_000).write_iceberg(table_identifier=target, catalog_kwargs=kwargs)
    table = gold_catalog(settings).load_table(tuple(target.split(".")))
    columns = [f.name for f in table.schema().fields]
    assert "total_orders" in columns, columns  # the bug: a source column in the target
    assert table.scan(selected_fields=("total_orders",)).to_arrow()["total_orders"].null_count == 40_000  # all nulls


# --- status -----------------------------------------------------------------------------------------


def test_feast_status_reports_the_catalog_without_secrets(settings: Settings) -> None:
    status = FeatureRegistry(settings).status()
    assert status.healthy
    assert status.catalog is not None and status.catalog["healthy"] is True
    assert (status.catalog["type"], status.catalog["name"], status.catalog["namespace"]) == (
        settings.asgard_gold_catalog,
        settings.trino_catalog,
        settings.gold_schema,
    )
    assert status.catalog["warehouse"] == settings.gold_warehouse
    assert f"{settings.gold_schema}.{CUSTOMER_TABLE}" in status.catalog["tables"]
    assert "Iceberg" in status.offline_store and "Ray" in status.offline_store  # not Feast's offline store
    assert settings.aws_secret_access_key not in status.model_dump_json()


def test_status_routes_report_the_catalog(settings: Settings, ray_session: None) -> None:
    from fastapi.testclient import TestClient

    from asgard_ray.api.app import create_app

    with TestClient(create_app(settings), base_url="http://127.0.0.1") as api:  # keyless API: loopback Host only
        feast = api.get("/feast/status")
        mlops = api.get("/mlops/status")
    assert feast.status_code == 200 and mlops.status_code == 200, (feast.text, mlops.text)
    for catalog in (feast.json()["catalog"], mlops.json()["gold_catalog"]):
        assert catalog["healthy"] is True and catalog["type"] == settings.asgard_gold_catalog
        assert f"{settings.gold_schema}.{CUSTOMER_TABLE}" in catalog["tables"]
    assert "Iceberg" in feast.json()["offline_store"]
    for body in (feast.text, mlops.text):
        assert settings.aws_secret_access_key not in body
