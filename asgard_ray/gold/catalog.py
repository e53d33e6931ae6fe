"""The gold layer's Iceberg catalog, configured from settings (one setting picks its type).

Embedded: pyiceberg's ``SqlCatalog`` on SQLite under ``ASGARD_HOME``, tables' files on the stack's
S3 server. Production: a REST, Glue or Hive catalog through pyiceberg properties (or ``sql`` on a
database server). The catalog's secrets (the S3 secret, the REST credential) come from settings, which
read the environment; they go into this process's catalog only, never into Feast's registry, logs or
status answers.

The embedded SQLite file lives on the machine that created it. Only ``ensure_namespace`` (the bootstrap)
may create it: a process on a node without it (a worker node that shares no disk with the head) fails
loudly, instead of SQLite creating an empty catalog there that has none of the tables.
"""

from __future__ import annotations

import functools
import logging
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asgard_ray.config import Settings
from asgard_ray.errors import ServiceUnavailable

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

__all__ = ["catalog_properties", "catalog_status", "ensure_namespace", "gold_catalog", "io_properties"]

log = logging.getLogger(__name__)

_SECRET_KEYS = ("s3.secret-access-key", "credential", "token")


def io_properties(settings: Settings) -> dict[str, str]:
    """pyiceberg FileIO properties for the platform's S3 (``s3.region`` is required, or it calls AWS)."""
    props = {
        "s3.access-key-id": settings.aws_access_key_id,
        "s3.secret-access-key": settings.aws_secret_access_key,
        "s3.region": settings.aws_region,
    }
    if settings.s3_endpoint:
        props["s3.endpoint"] = settings.s3_endpoint
    return props


def catalog_properties(settings: Settings, *, secrets: bool = True) -> dict[str, str]:
    """The catalog's pyiceberg properties; ``secrets=False`` leaves every secret out (for registries and answers)."""
    props: dict[str, str] = {"type": settings.asgard_gold_catalog, "warehouse": settings.gold_warehouse}
    if settings.gold_catalog_uri:
        props["uri"] = settings.gold_catalog_uri
    props.update(io_properties(settings))
    props.update(settings.asgard_gold_catalog_properties)
    if settings.asgard_gold_catalog_credential is not None:
        key = "credential" if ":" in settings.asgard_gold_catalog_credential.get_secret_value() else "token"
        props[key] = settings.asgard_gold_catalog_credential.get_secret_value()
    if not secrets:
        props = {k: v for k, v in props.items() if k not in _SECRET_KEYS}
    return props


def _sqlite_file(props: dict[str, str]) -> Path | None:
    """The embedded catalog's SQLite file, if the catalog is one."""
    uri = props.get("uri", "")
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


@functools.lru_cache(maxsize=4)
def _catalog(name: str, props_items: tuple[tuple[str, str], ...]) -> Catalog:
    from pyiceberg.catalog import load_catalog

    props = dict(props_items)
    path = _sqlite_file(props)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    return load_catalog(name, **props)


def gold_catalog(settings: Settings, *, create: bool = False) -> Catalog:
    """This process's catalog for these settings (built once; table metadata is read fresh on every load).

    Raises:
        ServiceUnavailable: The catalog is the embedded SQLite file and it is not on this node (``create``
            makes it: the bootstrap's ``ensure_namespace`` only).
    """
    items = tuple(sorted(catalog_properties(settings).items()))
    path = _sqlite_file(dict(items))
    if path is not None and not create and not path.exists():
        raise ServiceUnavailable(
            f"the gold catalog's SQLite file {path} is not on this node ({platform.node()}): the embedded catalog lives on "
            "the machine that created it. On a cluster whose nodes share no disk, put the catalog behind a server: "
            "ASGARD_GOLD_CATALOG=rest, glue or hive, or sql with a database server's URL in ASGARD_GOLD_CATALOG_URI",
            detail={"catalog": "sql", "node": platform.node()},
        )
    return _catalog(settings.trino_catalog, items)


def ensure_namespace(settings: Settings, namespace: str | None = None) -> None:
    """Create the gold namespace (or ``namespace``) if missing, and the embedded catalog's file with it."""
    gold_catalog(settings, create=True).create_namespace_if_not_exists(namespace or settings.gold_schema)


def catalog_status(settings: Settings) -> dict[str, Any]:
    """What ``/feast/status`` and ``/mlops/status`` report of the catalog; never raises, never a secret."""
    uri = settings.gold_catalog_uri or ""
    info: dict[str, Any] = {
        "type": settings.asgard_gold_catalog,
        "name": settings.trino_catalog,
        "namespace": settings.gold_schema,
        "warehouse": settings.gold_warehouse,
        "uri": uri.split("@")[-1] if "@" in uri else uri,  # no userinfo (a password) in an answer
    }
    try:
        tables = gold_catalog(settings).list_tables(settings.gold_schema)
        info.update(healthy=True, tables=sorted(".".join(t) for t in tables))
    except Exception as exc:  # a missing namespace or an unreachable catalog
        log.warning("gold catalog status: %s", exc)
        info.update(healthy=False, tables=[], error=f"{type(exc).__name__}: {str(exc)[:200]}")
    return info
