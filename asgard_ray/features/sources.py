"""Gold-layer tables as the older callers see them: a schema and a location (thin wrappers).

The gold layer is :mod:`asgard_ray.gold`: ``resolve_table`` finds a table by name in the Iceberg
catalog (or a Parquet folder, ``source.format: parquet``) and pins a snapshot. These two helpers
remain for callers that still list Parquet files under a location (monitoring's label join, and
scoring/retrieval until they read through ``resolve_table``):

- ``table_schema``: the table's schema at its current snapshot, through ``resolve_table``.
- ``table_uri``: the Parquet folder, or for an Iceberg table its ``data/`` folder. Listing that
  folder sees every data file ever appended, which equals the current snapshot only for an
  append-only table with no deletes or compaction; read through ``resolve_table`` for snapshot pins.
"""

from __future__ import annotations

import pyarrow as pa

from asgard_ray.config import Settings
from asgard_ray.gold import GoldFormat, resolve_table, valid_identifier
from asgard_ray.storage import Access, resolve_location

__all__ = ["table_schema", "table_uri"]


def table_uri(settings: Settings, table_name: str, format: GoldFormat | None = None) -> str:
    """The S3 folder holding a gold table's Parquet data files (a Parquet folder through the read allow-list).

    Raises:
        InvalidRequest: A bad name, or a location outside the read allow-list.
    """
    valid_identifier(table_name)
    if format != "parquet":
        from asgard_ray.gold.tables import _load

        table = _load(settings, settings.gold_schema, table_name)
        if table is not None:  # the catalog's own location (not request input): no allow-list to pass
            return f"{table.location().rstrip('/')}/data"
    return resolve_location(settings, settings.gold_uri(table_name), access=Access.READ, field="table_name").uri


def table_schema(settings: Settings, table_name: str, format: GoldFormat | None = None) -> pa.Schema:
    """A gold table's schema at its current snapshot (Iceberg), or from a Parquet footer (no data is read).

    Raises:
        NotFound: No such table.
    """
    return resolve_table(settings, table_name, format=format).schema
