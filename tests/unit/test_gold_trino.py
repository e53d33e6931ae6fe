"""Feast's Trino offline store and the Trino SQL over pinned gold snapshots, checked as text.

No Trino server or REST catalog runs here: these tests check the generated configuration and SQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from asgard_ray.config import Settings
from asgard_ray.errors import InvalidRequest
from asgard_ray.features.store import repo_config_dict, write_repo
from asgard_ray.gold.trino import job_predictions_sql, pinned_select, quote_identifier, snapshot_parent_sql

TRINO_PASSWORD = "trino-pw-9f3c"
CATALOG_SECRET = "rest-secret-77ab"
AWS_SECRET = "aws-secret-41de"


def _settings(tmp_path: Path, **extra: Any) -> Settings:
    return Settings(
        asgard_home=tmp_path / "home",
        feast_repo_path=tmp_path / "feast_repo",
        feast_offline_store="trino",
        trino_host="trino.example.internal",
        trino_port=8443,
        trino_catalog="lake",
        gold_schema="gold_prod",
        trino_user="feast",
        **extra,
    )


def test_trino_offline_store_config(tmp_path: Path) -> None:
    offline = repo_config_dict(_settings(tmp_path))["offline_store"]
    assert offline == {
        "type": "trino",
        "host": "trino.example.internal",
        "port": 8443,
        "catalog": "lake",
        "user": "feast",
        "connector": {"type": "iceberg"},
    }


def test_trino_password_is_basic_auth_over_https_in_memory(tmp_path: Path) -> None:
    offline = repo_config_dict(_settings(tmp_path, trino_password=SecretStr(TRINO_PASSWORD)))["offline_store"]
    assert offline["http-scheme"] == "https"
    assert offline["auth"] == {"type": "basic", "config": {"username": "feast", "password": TRINO_PASSWORD}}


def test_default_offline_store_is_still_ray(tmp_path: Path) -> None:
    settings = Settings(asgard_home=tmp_path / "home", feast_repo_path=tmp_path / "feast_repo")
    assert repo_config_dict(settings)["offline_store"]["type"] == "ray"


def test_trino_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in {
        "FEAST_OFFLINE_STORE": "trino",
        "TRINO_HOST": "t.svc",
        "TRINO_PORT": "9090",
        "TRINO_CATALOG": "ice",
        "GOLD_SCHEMA": "g",
        "TRINO_USER": "u",
        "ASGARD_HOME": str(tmp_path),
    }.items():
        monkeypatch.setenv(name, value)
    offline = repo_config_dict(Settings())["offline_store"]
    assert (offline["host"], offline["port"], offline["catalog"], offline["user"]) == ("t.svc", 9090, "ice", "u")
    assert pinned_select(Settings(), "t", 1) == 'SELECT * FROM "ice"."g"."t" FOR VERSION AS OF 1'


def test_write_repo_writes_no_secret(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        trino_password=SecretStr(TRINO_PASSWORD),
        asgard_gold_catalog="rest",
        asgard_gold_catalog_uri="https://catalog.example.internal/api/catalog",
        asgard_gold_catalog_credential=SecretStr(f"client:{CATALOG_SECRET}"),
        aws_secret_access_key=AWS_SECRET,
        feast_online_store="redis",
        feast_redis_connection_string=SecretStr("redis:6379,password=redis-pw-1"),
    )
    write_repo(settings)
    text = (settings.feast_repo / "feature_store.yaml").read_text()
    for secret in (TRINO_PASSWORD, CATALOG_SECRET, AWS_SECRET, "redis-pw-1"):
        assert secret not in text
    offline = yaml.safe_load(text)["offline_store"]
    assert offline["auth"]["config"]["password"] == "${TRINO_PASSWORD}"
    assert offline["type"] == "trino" and offline["connector"] == {"type": "iceberg"}


def test_pinned_select_sql(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert pinned_select(settings, "customer_features", 8_765_432_109_876, ["customer_id", "event_timestamp"]) == (
        'SELECT "customer_id", "event_timestamp" FROM "lake"."gold_prod"."customer_features" FOR VERSION AS OF 8765432109876'
    )
    assert pinned_select(settings, "t", 3, namespace="other").startswith('SELECT * FROM "lake"."other"."t"')


@pytest.mark.parametrize(
    "bad",
    ['x"; DROP TABLE y; --', "a;b", 'a"b', "a.b", "a b", "", "1abc", None, 3],
)
def test_identifiers_refuse_injection(tmp_path: Path, bad: Any) -> None:
    settings = _settings(tmp_path)
    with pytest.raises(InvalidRequest):
        quote_identifier(bad)
    with pytest.raises(InvalidRequest):
        pinned_select(settings, bad, 1)
    with pytest.raises(InvalidRequest):
        pinned_select(settings, "ok", 1, ["fine", bad])


@pytest.mark.parametrize("bad", ["1; DROP TABLE t", 1.5, True, -1, "12"])
def test_snapshot_id_must_be_an_int(tmp_path: Path, bad: Any) -> None:
    with pytest.raises(InvalidRequest):
        pinned_select(_settings(tmp_path), "t", bad)


def test_job_predictions_sql(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert job_predictions_sql(settings, "gold_prod.predictions", 11) == (
        'SELECT * FROM "lake"."gold_prod"."predictions" FOR VERSION AS OF 11'
    )
    assert job_predictions_sql(settings, "predictions", 12, 11) == (
        'SELECT * FROM "lake"."gold_prod"."predictions" FOR VERSION AS OF 12\n'
        "EXCEPT ALL\n"
        'SELECT * FROM "lake"."gold_prod"."predictions" FOR VERSION AS OF 11'
    )
    assert snapshot_parent_sql(settings, "scores.predictions", 12) == (
        'SELECT parent_id FROM "lake"."scores"."predictions$snapshots" WHERE snapshot_id = 12'
    )
    with pytest.raises(InvalidRequest):
        job_predictions_sql(settings, 'gold."x;', 12)


# --- against Feast's own Trino classes (the `trino` client is not installed: stubbed, import only) ---


@pytest.fixture
def feast_trino(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Feast 0.67's Trino offline-store module, imported with a stub ``trino`` client (no connection is made)."""
    import importlib
    import importlib.machinery
    import sys
    import types

    stubs = {name: types.ModuleType(name) for name in ("trino", "trino.auth", "trino.dbapi", "trino.exceptions")}
    for name, module in stubs.items():
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)  # found by importlib.util.find_spec
    for cls in (
        "BasicAuthentication",
        "CertificateAuthentication",
        "JWTAuthentication",
        "KerberosAuthentication",
        "OAuth2Authentication",
        "Authentication",
    ):
        setattr(stubs["trino.auth"], cls, type(cls, (), {"__init__": lambda self, *a, **k: None}))
    stubs["trino.exceptions"].TrinoQueryError = type("TrinoQueryError", (Exception,), {})  # type: ignore[attr-defined]
    stubs["trino.dbapi"].Cursor = type("Cursor", (), {})  # type: ignore[attr-defined]
    stubs["trino"].auth, stubs["trino"].dbapi = stubs["trino.auth"], stubs["trino.dbapi"]  # type: ignore[attr-defined]
    before = set(sys.modules)
    for name, module in stubs.items():
        monkeypatch.setitem(sys.modules, name, module)
    yield importlib.import_module("feast.infra.offline_stores.contrib.trino_offline_store.trino")
    for name in set(sys.modules) - before:  # drop every module imported against the stub
        if name.startswith("feast.infra.offline_stores.contrib.trino_offline_store"):
            monkeypatch.delitem(sys.modules, name, raising=False)


def test_feast_accepts_the_trino_config(feast_trino: Any, tmp_path: Path) -> None:
    from feast.repo_config import RepoConfig

    for password in (None, SecretStr(TRINO_PASSWORD)):
        settings = _settings(tmp_path, trino_password=password)
        offline = RepoConfig(repo_path=tmp_path, **repo_config_dict(settings)).offline_store
        assert isinstance(offline, feast_trino.TrinoOfflineStoreConfig)
        assert (offline.host, offline.port, offline.catalog, offline.user) == ("trino.example.internal", 8443, "lake", "feast")
        assert offline.connector == {"type": "iceberg"}
        assert offline.http_scheme == ("http" if password is None else "https")
        assert (offline.auth is None) == (password is None)


def test_trino_source_reads_a_pinned_snapshot(feast_trino: Any, tmp_path: Path) -> None:
    from asgard_ray.gold.trino import trino_source

    source = trino_source(_settings(tmp_path), "customer_features", 42, timestamp_field="event_timestamp")
    assert source.name == "customer_features_at_42" and source.timestamp_field == "event_timestamp"
    assert source.get_table_query_string() == ('(SELECT * FROM "lake"."gold_prod"."customer_features" FOR VERSION AS OF 42)')
    with pytest.raises(InvalidRequest):
        trino_source(_settings(tmp_path), "customer_features", 42, timestamp_field="ts; DROP")


def test_platform_store_builds_without_the_trino_client(tmp_path: Path) -> None:
    """Without feast[trino] the process's Feast store keeps the Ray offline store (Feast validates eagerly)."""
    import importlib.util

    from asgard_ray.features import store as store_module

    if importlib.util.find_spec("trino") is not None:
        pytest.skip("the trino client is installed: the in-process store uses Trino")
    settings = _settings(tmp_path, trino_password=SecretStr(TRINO_PASSWORD))
    settings = settings.model_copy(update={"feast_repo_path": tmp_path / "feast_repo"})
    fs = store_module._store(settings.model_dump_json())
    assert fs.config.offline_store.type == "ray"
    assert repo_config_dict(settings)["offline_store"]["type"] == "trino"  # feature_store.yaml keeps Trino


def test_platform_store_gets_the_secret_values(feast_trino: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``feature_store`` passes secrets beside the settings JSON (which masks them as ``**********``)."""
    import os

    from asgard_ray.features.store import feature_store

    settings = _settings(tmp_path, trino_password=SecretStr(TRINO_PASSWORD))
    for name in settings.worker_env():  # feature_store sets these in os.environ: undo after the test
        monkeypatch.setenv(name, os.environ.get(name, ""))
        if not os.environ[name]:
            monkeypatch.delenv(name)
    fs = feature_store(settings)
    assert fs.config.offline_store.type == "trino"
    assert fs.config.offline_store.auth.config["password"] == TRINO_PASSWORD


def test_redis_online_store_builds_with_the_connection_secret_as_a_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The production ConfigMap sets FEAST_ONLINE_STORE=redis: the client is installed (feast[redis]) and the
    process's store gets the password itself, not its mask (building the store opens no connection)."""
    import os

    from asgard_ray.features.store import feature_store

    settings = _settings(tmp_path, feast_online_store="redis", feast_redis_connection_string=SecretStr("redis:6379,password=redis-pw-2"))
    for name in settings.worker_env():  # feature_store sets these in os.environ: undo after the test
        monkeypatch.setenv(name, os.environ.get(name, ""))
        if not os.environ[name]:
            monkeypatch.delenv(name)
    fs = feature_store(settings)
    assert type(fs.config.online_store).__name__ == "RedisOnlineStoreConfig"
    assert fs.config.online_store.connection_string == "redis:6379,password=redis-pw-2"
