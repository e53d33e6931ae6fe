"""Trino SQL over the gold layer: queries pinned to one Iceberg snapshot (``FOR VERSION AS OF``).

Production only. Trino reads the same Iceberg catalog as the platform (``TRINO_CATALOG`` is that
catalog in Trino, ``GOLD_SCHEMA`` its namespace). Identifiers are validated (letters, digits, ``_``)
and double-quoted; snapshot ids must be ints. Nothing here connects to Trino: the SQL is text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from asgard_ray.config import Settings
from asgard_ray.errors import InvalidRequest
from asgard_ray.gold.tables import valid_identifier

if TYPE_CHECKING:
    from feast.infra.offline_stores.contrib.trino_offline_store.trino_source import TrinoSource

__all__ = ["job_predictions_sql", "pinned_select", "quote_identifier", "snapshot_parent_sql", "table_ref", "trino_source"]


def quote_identifier(name: Any, *, field: str = "identifier") -> str:
    """``"name"`` after validation: a quote, a semicolon, a space or a dot raises InvalidRequest."""
    return f'"{valid_identifier(name, field=field)}"'


def _snapshot(snapshot_id: Any) -> int:
    if isinstance(snapshot_id, bool) or not isinstance(snapshot_id, int) or snapshot_id < 0:
        raise InvalidRequest(f"snapshot id {str(snapshot_id)[:40]!r} is not a non-negative integer")
    return snapshot_id


def table_ref(settings: Settings, table: str, *, namespace: str | None = None) -> str:
    """``"<catalog>"."<schema>"."<table>"`` (schema: ``namespace`` or ``GOLD_SCHEMA``)."""
    return ".".join(
        (
            quote_identifier(settings.trino_catalog, field="TRINO_CATALOG"),
            quote_identifier(namespace or settings.gold_schema, field="namespace"),
            quote_identifier(table, field="table_name"),
        )
    )


def pinned_select(
    settings: Settings,
    table: str,
    snapshot_id: int,
    columns: Sequence[str] | None = None,
    *,
    namespace: str | None = None,
) -> str:
    """``SELECT <cols> FROM "<catalog>"."<schema>"."<table>" FOR VERSION AS OF <snapshot_id>``."""
    if columns is not None and not columns:
        raise InvalidRequest("columns is empty; give None for every column")
    cols = "*" if columns is None else ", ".join(quote_identifier(c, field="column") for c in columns)
    return f"SELECT {cols} FROM {table_ref(settings, table, namespace=namespace)} FOR VERSION AS OF {_snapshot(snapshot_id)}"


def trino_source(
    settings: Settings,
    table: str,
    snapshot_id: int,
    *,
    timestamp_field: str,
    columns: Sequence[str] | None = None,
    name: str | None = None,
    namespace: str | None = None,
) -> TrinoSource:
    """A Feast ``TrinoSource`` whose query reads ``table`` pinned to ``snapshot_id`` (needs ``feast[trino]``)."""
    from feast.infra.offline_stores.contrib.trino_offline_store.trino_source import TrinoSource

    valid_identifier(timestamp_field, field="timestamp_field")
    # parenthesised: Feast's Trino store puts a source's query straight after FROM in some queries
    return TrinoSource(
        name=name or f"{table}_at_{_snapshot(snapshot_id)}",
        query=f"({pinned_select(settings, table, snapshot_id, columns, namespace=namespace)})",
        timestamp_field=timestamp_field,
    )


def job_predictions_sql(settings: Settings, output_table: str, snapshot_id: int, parent_snapshot_id: int | None = None) -> str:
    """The SQL a Trino user runs to read one scoring job's predictions.

    ``output_table`` and ``snapshot_id`` are the job manifest's ``output_table`` (``<namespace>.<table>``,
    or a bare table in ``GOLD_SCHEMA``) and ``output_snapshot_id``: each job commits exactly one
    append snapshot. That snapshot holds the table as of the job, earlier jobs' rows included, so
    with ``parent_snapshot_id`` (its parent: ``snapshot_parent_sql``) the query keeps only the rows
    the job added. Without a parent (the table's first snapshot) it reads the whole snapshot.
    """
    namespace, _, table = output_table.rpartition(".")
    ref = table_ref(settings, table, namespace=namespace or None)
    sql = f"SELECT * FROM {ref} FOR VERSION AS OF {_snapshot(snapshot_id)}"
    if parent_snapshot_id is None:
        return sql
    return f"{sql}\nEXCEPT ALL\nSELECT * FROM {ref} FOR VERSION AS OF {_snapshot(parent_snapshot_id)}"


def snapshot_parent_sql(settings: Settings, output_table: str, snapshot_id: int) -> str:
    """``SELECT parent_id FROM "<catalog>"."<schema>"."<table>$snapshots" WHERE snapshot_id = <id>``."""
    namespace, _, table = output_table.rpartition(".")
    valid_identifier(table, field="output_table")
    catalog = quote_identifier(settings.trino_catalog, field="TRINO_CATALOG")
    schema = quote_identifier(namespace or settings.gold_schema, field="namespace")
    return f'SELECT parent_id FROM {catalog}.{schema}."{table}$snapshots" WHERE snapshot_id = {_snapshot(snapshot_id)}'
