"""Gold tables by name: Iceberg through the catalog (pinned to a snapshot), or a Parquet folder.

``resolve_table`` is the one place a request's ``table_name`` becomes a table: it checks the name,
asks the catalog, and pins a snapshot (the current one, or the one the caller names). The returned
:class:`GoldTable` carries the table's metadata location and snapshot id, so every later read
(``read``, ``to_ray``), on any node, sees exactly that snapshot through S3 alone: no reader after
the pin needs the catalog (the embedded catalog's SQLite file lives on the head only).

A Parquet folder under ``s3://<bucket>/<GOLD_SCHEMA>/<table>/`` (``format: parquet``) keeps working
for users who have one; it has no snapshots, so its pin is ``None``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from asgard_ray.config import Settings
from asgard_ray.errors import InvalidRequest, NotFound
from asgard_ray.gold.catalog import ensure_namespace, gold_catalog, io_properties

if TYPE_CHECKING:
    import pandas as pd
    from pyiceberg.table import Table

__all__ = [
    "GoldFormat",
    "GoldTable",
    "load_table",
    "pin_tables",
    "resolve_table",
    "snapshot_tag",
    "tag_snapshot",
    "valid_identifier",
    "write_table",
]

log = logging.getLogger(__name__)

GoldFormat = Literal["iceberg", "parquet"]
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def valid_identifier(name: Any, *, field: str = "table_name") -> str:
    """Check a table or namespace name (letters, digits, ``_``): it reaches a catalog and S3 keys."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidRequest(f"{field} {str(name)[:100]!r} is not valid; use letters, digits and '_' (at most 128)")
    return name


@dataclass(frozen=True)
class GoldTable:
    """A gold table pinned to one snapshot (Iceberg) or a Parquet folder."""

    name: str
    format: GoldFormat
    location: str
    """Iceberg: the metadata file of the pinned state; Parquet: the folder's URI."""
    schema: pa.Schema
    """The pinned snapshot's schema (old snapshots keep their old columns)."""
    snapshot_id: int | None = None
    namespace: str = "gold"

    @property
    def identifier(self) -> str:
        """``<namespace>.<table>``."""
        return f"{self.namespace}.{self.name}"

    def read(self, settings: Settings, columns: list[str] | None = None) -> pa.Table:
        """The pinned rows (projected to ``columns``) as one Arrow table, read through S3 only."""
        if self.format == "parquet":
            import pyarrow.dataset as pads

            from asgard_ray.storage import list_files, resolve

            files = [f for f in list_files(settings, self.location) if f.endswith(".parquet")]
            fs, _ = resolve(settings, self.location)
            return pads.dataset(files, filesystem=fs, format="parquet").to_table(columns=columns)
        from pyiceberg.io.pyarrow import ArrowScan

        table = _static(settings, self.location)
        scan = table.scan(snapshot_id=self.snapshot_id, selected_fields=tuple(columns) if columns else ("*",))
        # rows in commit order (oldest append first), so "the row stored last wins" holds for ties in
        # the as-of join and materialization; pyiceberg plans the newest manifest's files first
        sequence = _commit_order(table, self.snapshot_id)
        tasks = sorted(scan.plan_files(), key=lambda t: sequence.get(t.file.file_path, 0))
        return ArrowScan(table.metadata, table.io, scan.projection(), scan.row_filter, scan.case_sensitive, scan.limit).to_table(tasks)

    def to_ray(self, settings: Settings, columns: list[str] | None = None) -> Any:
        """The pinned rows as a Ray Dataset (one read task per data file)."""
        import ray.data

        if self.format == "parquet":
            from asgard_ray.storage import list_files, resolve

            files = [f for f in list_files(settings, self.location) if f.endswith(".parquet")]
            fs, _ = resolve(settings, self.location)
            return ray.data.read_parquet([f.removeprefix("s3://") for f in files], filesystem=fs, columns=columns)
        from asgard_ray.gold.catalog import catalog_properties

        ds = ray.data.read_iceberg(
            table_identifier=self.identifier,
            catalog_kwargs={"name": settings.trino_catalog, **catalog_properties(settings)},
            snapshot_id=self.snapshot_id,
        )
        return ds.select_columns(columns) if columns else ds


def _commit_order(table: Table, snapshot_id: int | None) -> dict[str, int]:
    """Each live data file's sequence number (the commit that added it) at ``snapshot_id``."""
    if snapshot_id is None:
        return {}
    entries = table.inspect.entries(snapshot_id).select(["sequence_number", "data_file"]).to_pylist()
    return {e["data_file"]["file_path"]: int(e["sequence_number"] or 0) for e in entries}


def _static(settings: Settings, metadata_location: str) -> Table:
    from pyiceberg.table import StaticTable

    return StaticTable.from_metadata(metadata_location, properties=io_properties(settings))


def load_table(settings: Settings, namespace: str, name: str) -> Table | None:
    """The catalog's current table ``<namespace>.<name>``, or None when there is no such table or namespace."""
    from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

    try:
        return gold_catalog(settings).load_table((namespace, name))
    except (NoSuchTableError, NoSuchNamespaceError):
        return None


def _schema_at(table: Table, snapshot_id: int | None) -> pa.Schema:
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    schema = table.schema()
    if snapshot_id is not None:
        snap = table.snapshot_by_id(snapshot_id)
        if snap is not None and snap.schema_id is not None:
            schema = table.schemas()[snap.schema_id]
    return schema_to_pyarrow(schema, include_field_ids=False)


def resolve_table(
    settings: Settings,
    table_name: str,
    *,
    snapshot_id: int | None = None,
    format: GoldFormat | None = None,
    namespace: str | None = None,
) -> GoldTable:
    """Find a gold table and pin a snapshot: ``snapshot_id`` if given, else the current one.

    ``format`` None means Iceberg when the catalog has the table, else a Parquet folder.

    Raises:
        InvalidRequest: A bad name, or a snapshot pin on a Parquet folder.
        NotFound: No such table, or no such snapshot of it.
    """
    name = valid_identifier(table_name)
    ns = valid_identifier(namespace or settings.gold_schema, field="namespace")
    if format != "parquet":
        table = load_table(settings, ns, name)
        if table is not None:
            if snapshot_id is None:
                current = table.current_snapshot()
                snapshot_id = current.snapshot_id if current else None
            elif table.snapshot_by_id(int(snapshot_id)) is None:
                raise NotFound(
                    f"gold table {ns}.{name} has no snapshot {snapshot_id}",
                    detail={"table_name": name, "snapshot_id": snapshot_id, "snapshots": [s.snapshot_id for s in table.snapshots()][-20:]},
                )
            return GoldTable(name, "iceberg", table.metadata_location, _schema_at(table, snapshot_id), snapshot_id, ns)
        if format == "iceberg":
            raise NotFound(f"gold table {ns}.{name} not found in the {settings.asgard_gold_catalog} catalog {settings.trino_catalog!r}")
    if snapshot_id is not None:
        raise InvalidRequest(f"gold table {name!r} is a Parquet folder, which has no snapshots; leave out its snapshot pin")
    return _parquet_table(settings, name, ns)


def pin_tables(
    settings: Settings,
    names: list[str],
    formats: dict[str, GoldFormat | None],
    as_of_snapshot: dict[str, int] | None,
    *,
    readers: str,
    given: dict[str, GoldTable] | None = None,
) -> dict[str, GoldTable]:
    """Pin each table a job reads, once: a ``given`` table, the snapshot ``as_of_snapshot`` names, else the current one.

    ``readers`` names what reads them, with its verb, for the message ("feature view(s) a, b do", "this job does").

    Raises:
        InvalidRequest: ``as_of_snapshot`` names a table not in ``names`` (422), pins a Parquet folder, or
            pins a ``given`` table to another snapshot.
        NotFound: An unknown table or snapshot (404).
    """
    names = list(dict.fromkeys(names))
    pins = dict(as_of_snapshot or {})
    unknown = sorted(set(pins) - set(names))
    if unknown:
        raise InvalidRequest(
            f"as_of_snapshot names table(s) {', '.join(unknown)} that {readers} not read; the tables read are {', '.join(names) or 'none'}",
            detail={"unknown_tables": unknown, "tables": names},
        )
    given = given or {}
    pinned: dict[str, GoldTable] = {}
    for name in names:
        table = given.get(name)
        if table is None:
            table = resolve_table(settings, name, snapshot_id=pins.get(name), format=formats.get(name))
        elif name in pins and pins[name] != table.snapshot_id:
            raise InvalidRequest(f"as_of_snapshot pins {name} to {pins[name]}, but the given table is pinned to {table.snapshot_id}")
        pinned[name] = table
    return pinned


def _parquet_table(settings: Settings, name: str, namespace: str) -> GoldTable:
    import pyarrow.dataset as pads

    from asgard_ray.storage import Access, list_files, resolve, resolve_location

    uri = resolve_location(settings, settings.s3_uri(namespace, name), access=Access.READ, field="table_name").uri
    files = [f for f in list_files(settings, uri) if f.endswith(".parquet")]
    if not files:
        raise NotFound(
            f"gold table {name!r} not found: not in the catalog's namespace {namespace!r} and no Parquet files under {uri}",
            detail={"table_name": name, "location": uri, "gold_schema": namespace},
        )
    fs, _ = resolve(settings, uri)
    return GoldTable(name, "parquet", uri, pads.dataset(files[:1], filesystem=fs, format="parquet").schema, None, namespace)


def _arrow(data: pa.Table | pd.DataFrame) -> pa.Table:
    """An Arrow table Iceberg accepts: nanosecond timestamps become microseconds."""
    table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
    fields = []
    for f in table.schema:
        if pa.types.is_timestamp(f.type) and f.type.unit == "ns":
            f = f.with_type(pa.timestamp("us", tz=f.type.tz))
        fields.append(f)
    return table.cast(pa.schema(fields, metadata=table.schema.metadata))


def write_table(
    settings: Settings,
    table_name: str,
    data: pa.Table | pd.DataFrame,
    *,
    namespace: str | None = None,
    summary: dict[str, str] | None = None,
) -> int:
    """Append ``data`` in one commit (creating the table if needed); return the new snapshot id.

    ``summary`` goes into the snapshot's summary (a job id, a model version), which is how a retry
    finds that its commit already happened.
    """
    from pyiceberg.exceptions import NoSuchTableError

    name = valid_identifier(table_name)
    ns = valid_identifier(namespace or settings.gold_schema, field="namespace")
    arrow = _arrow(data)
    ensure_namespace(settings, ns)
    catalog = gold_catalog(settings)
    try:
        table = catalog.load_table((ns, name))
    except NoSuchTableError:
        props = {"write.target-file-size-bytes": str(settings.asgard_gold_target_file_mb * 1024 * 1024)}
        table = catalog.create_table_if_not_exists((ns, name), schema=arrow.schema, properties=props)
    table.append(arrow, snapshot_properties=dict(summary or {}))
    snap = table.current_snapshot()
    assert snap is not None
    log.info("appended %d rows to %s.%s: snapshot %d", arrow.num_rows, ns, name, snap.snapshot_id)
    return int(snap.snapshot_id)


def snapshot_tag(model_name: str, version: int | str) -> str:
    """The tag that keeps the snapshot a model version was trained on: ``asgard-<model>-v<version>``."""
    return f"asgard-{model_name}-v{version}"


def tag_snapshot(settings: Settings, table: GoldTable, tag: str) -> bool:
    """Tag the pinned snapshot (so snapshot expiry keeps it); False for a Parquet folder. Idempotent."""
    if table.format != "iceberg" or table.snapshot_id is None:
        return False
    loaded = gold_catalog(settings).load_table((table.namespace, table.name))
    ref = loaded.metadata.refs.get(tag)
    if ref is not None and ref.snapshot_id == table.snapshot_id:
        return True
    with loaded.manage_snapshots() as ms:
        if ref is not None:
            ms.remove_tag(tag)
        ms.create_tag(snapshot_id=table.snapshot_id, tag_name=tag)
    return True
