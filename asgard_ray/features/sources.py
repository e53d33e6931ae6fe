"""A gold table's location, as a feature view's ``source_uri`` shows it.

The gold layer is :mod:`asgard_ray.gold`: ``resolve_table`` finds a table by name in the Iceberg
catalog (or a Parquet folder, ``source.format: parquet``) and pins a snapshot; every read goes
through it. ``table_uri`` only names where the data lives: the Parquet folder, or for an Iceberg
table its ``data/`` folder (listing that folder is not a snapshot read).
"""

from __future__ import annotations

from asgard_ray.config import Settings
from asgard_ray.gold import GoldFormat, valid_identifier
from asgard_ray.storage import Access, resolve_location

__all__ = ["table_uri"]


def table_uri(settings: Settings, table_name: str, format: GoldFormat | None = None) -> str:
    """The S3 folder holding a gold table's Parquet data files (a Parquet folder through the read allow-list).

    Raises:
        InvalidRequest: A bad name, or a location outside the read allow-list.
    """
    valid_identifier(table_name)
    if format != "parquet":
        from asgard_ray.gold import load_table

        table = load_table(settings, settings.gold_schema, table_name)
        if table is not None:  # the catalog's own location (not request input): no allow-list to pass
            return f"{table.location().rstrip('/')}/data"
    return resolve_location(settings, settings.gold_uri(table_name), access=Access.READ, field="table_name").uri
