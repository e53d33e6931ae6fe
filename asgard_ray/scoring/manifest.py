"""The job manifest ``_manifest.json``: the commit marker of a batch-scoring output.

A job writes its data files first, checks their row counts, and only then writes the manifest
(one S3 PUT). Readers trust the manifest, never a listing: files not in it are not part of the
output (a running, crashed or replaced job's). A failed job writes no manifest.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from asgard_ray.config import Settings
from asgard_ray.errors import InvalidRequest, NotFound
from asgard_ray.storage import Access, exists, read_json, resolve_location, write_json

__all__ = ["Manifest", "ManifestFile", "manifest_uri", "read_manifest", "read_scored_rows", "write_manifest"]

if TYPE_CHECKING:
    import pandas as pd

_NAME = "_manifest.json"


class ManifestFile(BaseModel):
    """One data file of the output."""

    path: str
    rows: int


class Manifest(BaseModel):
    """What a completed job wrote and where it came from."""

    model_config = ConfigDict(protected_namespaces=())

    manifest_version: int = 1
    job_id: str
    status: Literal["completed"] = "completed"
    model_name: str
    model_version: str
    run_id: str | None = None
    alias: str | None = None
    model_uri: str | None = None
    model_type: str | None = None
    framework: str | None = None
    flavor: str | None = None
    feature_views: list[str] = Field(default_factory=list)
    feast_registry_version: str | None = None
    feature_columns: list[str] = Field(default_factory=list)
    join_keys: list[str] = Field(default_factory=list)
    timestamp_column: str = "event_timestamp"
    prediction_column: str = "prediction"
    probability_columns: list[str] = Field(default_factory=list)
    classes: list[Any] | None = None
    entities: dict[str, Any] = Field(default_factory=dict)
    output_path: str
    output_parquet: bool = True
    """False when the request named only ``output_table``: ``output_path`` is then the job's staging prefix."""
    output_table: str | None = None
    """``<namespace>.<table>``: the Iceberg table the rows were appended to (after this manifest's first write)."""
    output_snapshot_id: int | None = None
    """The snapshot of ``output_table`` holding exactly this job's rows; None until that commit is done."""
    feature_snapshots: dict[str, int | None] = Field(default_factory=dict)
    """Gold table -> the snapshot id the features (and a table entity source) were read from; None: a Parquet folder."""
    partitioning: dict[str, Any] = Field(default_factory=dict)
    files: list[ManifestFile] = Field(default_factory=list)
    replaced_job_id: str | None = None
    """The job whose committed output this one replaced (``overwrite``)."""
    replaced_files: list[str] = Field(default_factory=list)
    """That output's files, deleted after this commit; listed so a crash before the deletion
    leaves them the platform's (a later overwrite removes them) rather than foreign."""
    total_rows: int
    scored_at: datetime
    started_at: datetime
    finished_at: datetime
    timings: dict[str, float] = Field(default_factory=dict)
    execution_path: str | None = None
    """``warm`` (a warm worker, in process) or ``cluster`` (Ray Data); None in manifests written before it."""


def manifest_uri(output_path: str) -> str:
    """The manifest's location under an output prefix."""
    return f"{output_path.rstrip('/')}/{_NAME}"


def write_manifest(settings: Settings, manifest: Manifest) -> str:
    """Write the manifest (the commit); return its URI."""
    uri = manifest_uri(manifest.output_path)
    write_json(settings, uri, manifest.model_dump(mode="json"))
    return uri


def read_manifest(settings: Settings, output_path_or_job_id: str) -> Manifest:
    """Read a completed job's manifest, by output prefix or by job id.

    A prefix passes the storage resolver (read allow-list); the manifest's files must lie under it.

    Raises:
        InvalidRequest: The prefix is not an allowed location, or the manifest is not the platform's.
        NotFound: No such job, or the job has not committed (still running, failed, or crashed).
    """
    ref = output_path_or_job_id.strip()
    by_path = "://" in ref or ref.startswith("/")
    if by_path:
        output_path = resolve_location(settings, ref, access=Access.READ, field="output_path").uri
    else:
        from asgard_ray.jobs import JobStore

        record = JobStore(settings).get("batch_scoring", ref)
        found = (record.result or {}).get("output_path") or (record.request or {}).get("output_path")
        if not found:
            raise NotFound(f"batch scoring job {ref!r} has no output path yet (status {record.status})")
        output_path = str(found)  # the platform's own record: checked at submission, or its staging location
    uri = manifest_uri(output_path)
    if not exists(settings, uri):
        raise NotFound(f"no committed output at {output_path}: {_NAME} is missing (job running, failed or never run)")
    try:
        manifest = Manifest.model_validate(read_json(settings, uri))
    except ValueError as exc:
        raise InvalidRequest(f"{uri} is not a platform manifest; point at a batch scoring output") from exc
    outside = [f.path for f in manifest.files if not f.path.startswith(output_path.rstrip("/") + "/")]
    if outside:
        raise InvalidRequest(f"{uri} lists {len(outside)} file(s) outside {output_path}; it was not written by this platform")
    manifest = manifest.model_copy(update={"output_path": output_path})
    if not by_path and manifest.job_id != ref:
        raise NotFound(f"output of job {ref!r} at {output_path} was replaced by job {manifest.job_id!r}")
    return manifest


def read_scored_rows(
    settings: Settings, output_path_or_job_id: str, columns: list[str] | None = None, limit: int | None = None
) -> pd.DataFrame:
    """Read a committed output: exactly the manifest's files, with ``model_version`` and ``score_date``.

    Args:
        settings: Platform settings.
        output_path_or_job_id: The output prefix or the job id.
        columns: Columns to read (default all).
        limit: Read at most this many rows (the first files' rows).
    """
    import pyarrow.dataset as pads

    from asgard_ray.storage import resolve

    manifest = read_manifest(settings, output_path_or_job_id)
    fs, base = resolve(settings, manifest.output_path)
    paths = [resolve(settings, f.path)[1] for f in manifest.files]
    dataset = pads.dataset(paths, filesystem=fs, format="parquet", partitioning="hive", partition_base_dir=base)
    table = dataset.head(limit, columns=columns) if limit is not None else dataset.to_table(columns=columns)
    return table.to_pandas()
