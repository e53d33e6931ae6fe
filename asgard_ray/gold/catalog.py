"""The gold layer's Iceberg catalog, configured from settings (one setting picks its type).

Embedded: pyiceberg's ``SqlCatalog`` on SQLite under ``ASGARD_HOME``, tables' files on the stack's
S3 server. Production: a REST, Glue or Hive catalog through pyiceberg properties. The catalog's
secrets (the S3 secret, the REST credential) come from settings, which read the environment; they go
into this process's catalog only, never into Feast's registry, logs or status answers.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

from asgard_ray.config import Settings

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


@functools.lru_cache(maxsize=4)
def _catalog(name: str, props_items: tuple[tuple[str, str], ...]) -> Catalog:
    from pyiceberg.catalog import load_catalog

    props = dict(props_items)
    uri = props.get("uri", "")
    if uri.startswith("sqlite:///"):
        from pathlib import Path

        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return load_catalog(name, **props)


def gold_catalog(settings: Settings) -> Catalog:
    """This process's catalog for these settings (built once; table metadata is read fresh on every load)."""
    return _catalog(settings.trino_catalog, tuple(sorted(catalog_properties(settings).items())))


def ensure_namespace(settings: Settings, namespace: str | None = None) -> None:
    """Create the gold namespace (or ``namespace``) if missing."""
    gold_catalog(settings).create_namespace_if_not_exists(namespace or settings.gold_schema)


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
