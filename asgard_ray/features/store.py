"""The Feast store, configured from settings: registry on S3, Ray (or Trino) offline store, SQLite (or Redis) online store.

The registry is a file on S3 (durable, shared by every node and replica, read fresh on every call).
The offline store is Feast's Ray offline store, so point-in-time joins run as Ray Data work on the
platform's cluster; it reuses the Ray connection of the calling process instead of starting its own.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from typing import TYPE_CHECKING, Any

import yaml

from asgard_ray.config import Settings

if TYPE_CHECKING:
    from feast import FeatureStore

__all__ = ["feature_store", "offline_store_config", "online_store_config", "repo_config_dict", "write_repo"]

log = logging.getLogger(__name__)


def repo_config_dict(settings: Settings) -> dict[str, Any]:
    """``feature_store.yaml`` as a dict."""
    return {
        "project": settings.feast_project,
        "provider": "local",
        "registry": {
            "registry_type": "file",
            "path": settings.s3_uri("feast", "registry.pb"),
            "cache_ttl_seconds": 0,
        },
        "offline_store": offline_store_config(settings),
        "online_store": online_store_config(settings),
        "entity_key_serialization_version": 3,
    }


def offline_store_config(settings: Settings) -> dict[str, Any]:
    """The offline store: Feast's Ray store (default) or its Trino store over the gold Iceberg catalog.

    ``FEAST_OFFLINE_STORE=trino`` points Feast at ``TRINO_HOST:TRINO_PORT``, catalog ``TRINO_CATALOG``
    (the same Iceberg catalog as ``ASGARD_GOLD_CATALOG``), user ``TRINO_USER``. With
    ``TRINO_PASSWORD`` set it uses basic auth over https; the password goes into the in-memory config
    only and ``write_repo`` writes a placeholder. The platform's own offline reads (training frames,
    scoring's as-of index) do not go through this store: they read pinned snapshots (``asgard_ray.gold``).
    """
    if settings.feast_offline_store == "trino":
        config: dict[str, Any] = {
            "type": "trino",
            "host": settings.trino_host,
            "port": settings.trino_port,
            "catalog": settings.trino_catalog,
            "user": settings.trino_user,
            "connector": {"type": "iceberg"},
        }
        if settings.trino_password is not None:
            config["http-scheme"] = "https"
            config["auth"] = {
                "type": "basic",
                "config": {"username": settings.trino_user, "password": settings.trino_password.get_secret_value()},
            }
        return config
    return {
        "type": "ray",
        "storage_path": settings.s3_uri("feast", "staging"),
        "enable_ray_logging": False,
    }


def online_store_config(settings: Settings) -> dict[str, Any]:
    """The online store: SQLite in the Feast repo (embedded, one machine) or Redis (production).

    Redis's connection string may hold a password: it goes into the in-memory config only, and
    ``write_repo`` writes a placeholder in its place.
    """
    if settings.feast_online_store == "redis":
        secret = settings.feast_redis_connection_string
        if secret is None:
            raise ValueError("FEAST_ONLINE_STORE=redis needs FEAST_REDIS_CONNECTION_STRING (host:port[,password=...])")
        return {"type": "redis", "connection_string": secret.get_secret_value()}
    return {"type": "sqlite", "path": str(settings.feast_repo / "online_store.db")}


def write_repo(settings: Settings) -> None:
    """Write ``feature_store.yaml`` into the Feast repo folder (for the ``feast`` CLI and users)."""
    settings.feast_repo.mkdir(parents=True, exist_ok=True)
    text = "# Written by asgard from its settings; edit the settings, not this file.\n"
    config = repo_config_dict(settings)
    if config["online_store"]["type"] == "redis":  # never a secret on disk
        config["online_store"]["connection_string"] = "${FEAST_REDIS_CONNECTION_STRING}"
    if "auth" in config["offline_store"]:  # the Trino password, likewise
        config["offline_store"]["auth"]["config"]["password"] = "${TRINO_PASSWORD}"
    text += yaml.safe_dump(config, sort_keys=False)
    (settings.feast_repo / "feature_store.yaml").write_text(text)


_STORE_SECRETS = ("feast_redis_connection_string", "trino_password")


@functools.lru_cache(maxsize=4)
def _store(settings_json: str, secrets: tuple[tuple[str, str], ...] = ()) -> FeatureStore:
    from feast import FeatureStore
    from feast.repo_config import RepoConfig
    from pydantic import SecretStr

    # JSON masks SecretStr values: the store's secrets travel beside it, as values
    settings = Settings.model_validate_json(settings_json)
    settings = settings.model_copy(update={name: SecretStr(value) for name, value in secrets})
    settings.feast_repo.mkdir(parents=True, exist_ok=True)
    config_dict = repo_config_dict(settings)
    if config_dict["offline_store"]["type"] == "trino" and importlib.util.find_spec("trino") is None:
        # Feast validates the Trino store eagerly and needs the `trino` client (feast[trino]). The
        # platform's own offline reads never go through Feast (pinned snapshots, asgard_ray.gold),
        # so without the client this process keeps the Ray store; feature_store.yaml keeps Trino.
        log.warning(
            "FEAST_OFFLINE_STORE=trino but the trino client is not installed (feast[trino]); using the Ray offline store in-process"
        )
        config_dict["offline_store"] = offline_store_config(settings.model_copy(update={"feast_offline_store": "ray"}))
    config = RepoConfig(repo_path=settings.feast_repo, **config_dict)
    return FeatureStore(config=config)


def feature_store(settings: Settings) -> FeatureStore:
    """The process's Feast store for these settings (built once; the registry is read fresh).

    Feast reads S3 through its own clients: the S3 registry store takes its endpoint from
    ``FEAST_S3_ENDPOINT_URL`` and the Ray offline store's staging path goes through pyarrow's
    ``from_uri`` (``AWS_ENDPOINT_URL_S3``). Entrypoints on the cluster inherit these from
    ``Settings.worker_env``; a plain process gets them here (existing values win).
    """
    import os

    for name, value in settings.worker_env().items():
        os.environ.setdefault(name, value)
    secrets = tuple((name, value.get_secret_value()) for name in _STORE_SECRETS if (value := getattr(settings, name)) is not None)
    return _store(settings.model_dump_json(exclude={"s3_endpoint", "tracking_uri", "dashboard_url", "api_url"}), secrets)
