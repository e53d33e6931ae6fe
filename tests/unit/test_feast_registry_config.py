"""Feast's registry from settings: the S3 file (embedded) or the SQL registry (production), its secret kept off disk.

Pure configuration (no Feast import, no database); ``tests/production`` runs the SQL registry on Postgres.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from asgard_ray.features.store import registry_config, registry_location, repo_config_dict, write_repo
from tests.conftest import isolated_settings

URL = "postgresql+psycopg://feast:s3cr3t-pw@db.internal:5432/feast"


def test_the_default_registry_is_one_file_on_s3(tmp_path: Path) -> None:
    settings = isolated_settings(asgard_home=tmp_path)
    assert registry_config(settings) == {"registry_type": "file", "path": "s3://asgard/feast/registry.pb", "cache_ttl_seconds": 0}
    assert registry_location(settings) == "s3://asgard/feast/registry.pb"


def test_the_sql_registry_takes_its_url_as_a_secret_and_checks_pooled_connections(tmp_path: Path) -> None:
    settings = isolated_settings(asgard_home=tmp_path, feast_registry_type="sql", feast_registry_path=URL)
    config = registry_config(settings)
    assert config["registry_type"] == "sql" and config["path"] == URL
    assert config["sqlalchemy_config_kwargs"]["pool_pre_ping"] is True  # a restarted database costs a reconnect
    assert "s3cr3t-pw" not in repr(settings) and "s3cr3t-pw" not in settings.model_dump_json()
    assert registry_location(settings) == "postgresql+psycopg://feast:***@db.internal:5432/feast"
    assert settings.to_env()["FEAST_REGISTRY_PATH"] == URL  # a child process gets the value, not the mask


def test_feature_store_yaml_holds_placeholders_never_the_secrets(tmp_path: Path) -> None:
    settings = isolated_settings(
        asgard_home=tmp_path,
        feast_repo_path=tmp_path / "repo",
        feast_registry_type="sql",
        feast_registry_path=URL,
        feast_online_store="redis",
        feast_redis_connection_string="redis.internal:6379,password=r3dis-pw",
    )
    assert repo_config_dict(settings)["registry"]["path"] == URL  # in memory: the value
    write_repo(settings)
    text = (tmp_path / "repo" / "feature_store.yaml").read_text()
    assert "s3cr3t-pw" not in text and "r3dis-pw" not in text
    written = yaml.safe_load(text)
    assert written["registry"]["path"] == "${FEAST_REGISTRY_PATH}" and written["registry"]["registry_type"] == "sql"
    assert written["online_store"]["connection_string"] == "${FEAST_REDIS_CONNECTION_STRING}"


def test_the_sql_registry_without_its_url_is_refused(tmp_path: Path) -> None:
    settings = isolated_settings(asgard_home=tmp_path, feast_registry_type="sql")
    with pytest.raises(ValueError, match="FEAST_REGISTRY_PATH"):
        registry_config(settings)
