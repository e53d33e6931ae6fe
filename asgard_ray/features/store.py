"""The Feast store, configured from settings: registry on S3 (or SQL), Ray (or Trino) offline store, SQLite (or Redis) online store.

The registry is a file on S3 (durable, shared by every node and replica, read fresh on every call),
or in production Feast's SQL registry on Postgres (``FEAST_REGISTRY_TYPE=sql``), which takes
concurrent writers. Secrets (the registry's database URL, Redis's connection string, Trino's
password) travel as values in the in-memory config and never reach ``feature_store.yaml``.
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

__all__ = [
    "feature_store",
    "offline_store_config",
    "online_store_config",
    "registry_config",
    "registry_location",
    "repo_config_dict",
    "write_repo",
]

log = logging.getLogger(__name__)


def repo_config_dict(settings: Settings) -> dict[str, Any]:
    """``feature_store.yaml`` as a dict."""
    return {
        "project": settings.feast_project,
        "provider": "local",
        "registry": registry_config(settings),
        "offline_store": offline_store_config(settings),
        "online_store": online_store_config(settings),
        "entity_key_serialization_version": 3,
    }


def registry_config(settings: Settings) -> dict[str, Any]:
    """The registry: one file on S3 (default) or Feast's SQL registry (``FEAST_REGISTRY_TYPE=sql``).

    The file registry is read, changed and written back whole, so its writers are serialised by the
    writer actor (``features.registry``). The SQL registry keeps one row per object in a database
    (Postgres in production), so replicas and job drivers may write at once. Its URL
    (``FEAST_REGISTRY_PATH``) holds the database password: it goes into the in-memory config only,
    and ``write_repo`` writes a placeholder. Pooled connections are checked before use, so a
    restarted database costs the next call a reconnect, not an error.
    """
    if settings.feast_registry_type == "sql":
        secret = settings.feast_registry_path
        if secret is None:
            raise ValueError("FEAST_REGISTRY_TYPE=sql needs FEAST_REGISTRY_PATH (postgresql+psycopg://user:password@host:5432/db)")
        return {
            "registry_type": "sql",
            "path": secret.get_secret_value(),
            "cache_ttl_seconds": 0,
            "sqlalchemy_config_kwargs": {"echo": False, "pool_pre_ping": True},
        }
    return {"registry_type": "file", "path": settings.state_uri("feast", "registry.pb"), "cache_ttl_seconds": 0}


def registry_location(settings: Settings) -> str:
    """Where the registry is, for status pages and logs: the S3 object, or the SQL URL without its password."""
    if settings.feast_registry_type == "sql" and settings.feast_registry_path is not None:
        from sqlalchemy.engine import make_url

        try:
            return make_url(settings.feast_registry_path.get_secret_value()).render_as_string(hide_password=True)
        except Exception:  # an unparsable URL: say which kind it is, never its text
            return "sql registry (FEAST_REGISTRY_PATH)"
    return settings.state_uri("feast", "registry.pb")


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
        "storage_path": settings.state_uri("feast", "staging"),
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
    if config["registry"]["registry_type"] == "sql":  # the database password, likewise
        config["registry"]["path"] = "${FEAST_REGISTRY_PATH}"
    if config["online_store"]["type"] == "redis":  # never a secret on disk
        config["online_store"]["connection_string"] = "${FEAST_REDIS_CONNECTION_STRING}"
    if "auth" in config["offline_store"]:  # the Trino password, likewise
        config["offline_store"]["auth"]["config"]["password"] = "${TRINO_PASSWORD}"
    text += yaml.safe_dump(config, sort_keys=False)
    (settings.feast_repo / "feature_store.yaml").write_text(text)


_STORE_SECRETS = ("feast_redis_connection_string", "feast_registry_path", "trino_password")


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
