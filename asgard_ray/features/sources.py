"""Gold-layer tables: where ``source.table_name`` lives and what columns it has.

Embedded mode keeps each gold table as Parquet under ``s3://<bucket>/<GOLD_SCHEMA>/<table>/``.
Production keeps them as Iceberg tables in ``TRINO_CATALOG.GOLD_SCHEMA``; Feast reads their Parquet
data files through the same S3 path (an Iceberg table's ``data/`` folder), configured by the same
settings. Reading Iceberg metadata through pyiceberg/Trino is not wired yet.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.dataset as pads

from asgard_ray.config import Settings
from asgard_ray.errors import InvalidRequest, NotFound
from asgard_ray.storage import Access, list_files, resolve, resolve_location

__all__ = ["table_schema", "table_uri"]

_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def table_uri(settings: Settings, table_name: str) -> str:
    """The S3 prefix of a gold table, through the storage resolver (read allow-list).

    Raises:
        InvalidRequest: The name does not resolve to a readable location (``..``, slashes, encodings).
    """
    if not isinstance(table_name, str) or not _TABLE.match(table_name):
        raise InvalidRequest(f"table name {str(table_name)[:100]!r} is not valid; use letters, digits and '_'")
    return resolve_location(settings, settings.gold_uri(table_name), access=Access.READ, field="table_name").uri


def table_schema(settings: Settings, table_name: str) -> pa.Schema:
    """Read a gold table's schema from its Parquet footers (no data is read)."""
    uri = table_uri(settings, table_name)
    files = [f for f in list_files(settings, uri) if f.endswith(".parquet")]
    if not files:
        raise NotFound(
            f"gold table {table_name!r} not found: no Parquet files under {uri}",
            detail={"table_name": table_name, "location": uri, "gold_schema": settings.gold_schema},
        )
    fs, _ = resolve(settings, uri)
    return pads.dataset(files[:1], filesystem=fs, format="parquet").schema
