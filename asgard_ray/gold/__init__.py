"""The gold layer on Apache Iceberg: a catalog from settings, tables by name, snapshots pinned per run."""

from asgard_ray.gold.catalog import catalog_properties, catalog_status, ensure_namespace, gold_catalog, io_properties
from asgard_ray.gold.tables import (
    GoldFormat,
    GoldTable,
    load_table,
    pin_tables,
    resolve_table,
    snapshot_tag,
    tag_snapshot,
    valid_identifier,
    write_table,
)

__all__ = [
    "GoldFormat",
    "GoldTable",
    "catalog_properties",
    "catalog_status",
    "ensure_namespace",
    "gold_catalog",
    "io_properties",
    "load_table",
    "pin_tables",
    "resolve_table",
    "snapshot_tag",
    "tag_snapshot",
    "valid_identifier",
    "write_table",
]
