"""Where scored rows go, and how a job's files are told apart, counted and removed.

Layout under the request's ``output_path`` (always a prefix, even when it ends in ``.parquet``,
as in the seed's ``s3://my-bucket/predictions/batch_2025_10_17.parquet``)::

    <output_path>/_manifest.json                                   the commit marker, written last
    <output_path>/model_version=<v>/score_date=<YYYY-MM-DD>/<job_id>_<write_uuid>_<task>-<i>.parquet

Hive-style partitions by model version and scoring date (UTC date of the job's start), so
``pyarrow.dataset`` / pandas / Spark / Trino read ``model_version`` and ``score_date`` back as
columns; files starting with ``_`` (the manifest) are skipped by those readers.

Exactly-once: every data file carries the job id in its name and is written by one Ray Data write
task whose file name is fixed by (write uuid, task index), so a retried task replaces its own file
(one S3 PUT) rather than adding another. Before the manifest is written the job's files are listed
and their Parquet footers summed; the total must equal the entity rows in. A job that fails removes
its own files; re-running a job id first removes whatever an earlier attempt of that id left.

Ownership: the platform deletes only what it can prove it wrote. A job's own files match the
layout above exactly; a committed output's files are those its ``_manifest.json`` lists (and the
files it says it replaced). Anything else under the prefix is *foreign*: never deleted, and a
reason to refuse the path (409), with or without ``overwrite``. One job at a time writes a prefix:
it holds ``<output_path>/_lease.json`` (``asgard_ray.storage.lease``) from start to commit.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow.parquet as pq
from ray.data.datasource import FilenameProvider

from asgard_ray.config import Settings
from asgard_ray.errors import Conflict
from asgard_ray.storage import LEASE_NAME, Access, list_files, read_json, resolve, resolve_location, to_uri

__all__ = [
    "MANIFEST_NAME",
    "SUMMARY_JOB_ID",
    "JobFilenameProvider",
    "OutputLayout",
    "OutputState",
    "ProgressPoller",
    "check_output_path",
    "check_table_columns",
    "classify",
    "commit_table",
    "count_rows",
    "delete_files",
    "foreign_conflict",
    "is_job_file",
    "job_files",
    "job_snapshot",
    "output_state",
    "read_platform_manifest",
    "split_table",
    "staging_path",
]

log = logging.getLogger(__name__)

MANIFEST_NAME = "_manifest.json"

_JOB_FILE = re.compile(r"^model_version=[^/]+/score_date=\d{4}-\d{2}-\d{2}/[^/]+$")
_FILE_TAIL = r"_[A-Za-z0-9]+_\d{6}(-\d+)?\.parquet"


def check_output_path(settings: Settings, output_path: str) -> str:
    """Normalise ``output_path`` and check it is an allowed place to write (the storage resolver).

    Raises:
        InvalidRequest: Not an allowed location (see ``asgard_ray.storage.paths``).
    """
    return resolve_location(settings, output_path, access=Access.WRITE, field="output_path").uri


@dataclass(frozen=True)
class OutputLayout:
    """The paths of one job's output."""

    output_path: str
    model_version: str
    score_date: str

    @classmethod
    def for_job(cls, output_path: str, model_version: str, scored_at: datetime) -> OutputLayout:
        """Layout of a job that starts scoring at ``scored_at``."""
        return cls(output_path.rstrip("/"), model_version, scored_at.strftime("%Y-%m-%d"))

    @property
    def data_dir(self) -> str:
        """The partition folder the job writes into."""
        return f"{self.output_path}/model_version={self.model_version}/score_date={self.score_date}"

    @property
    def manifest_uri(self) -> str:
        """The manifest (commit marker)."""
        return f"{self.output_path}/{MANIFEST_NAME}"

    @property
    def partitioning(self) -> dict[str, object]:
        """How the output is partitioned, for the manifest."""
        return {
            "flavor": "hive",
            "columns": ["model_version", "score_date"],
            "values": {"model_version": self.model_version, "score_date": self.score_date},
            "template": "{output_path}/model_version={model_version}/score_date={score_date}/{job_id}_*.parquet",
        }


class JobFilenameProvider(FilenameProvider):
    """File names ``<job_id>_<write_uuid>_<task>.parquet``: deterministic per write task, tagged by job."""

    def __init__(self, job_id: str) -> None:
        super().__init__(file_format="parquet")
        self.job_id = job_id

    def get_filename_for_task(self, write_uuid: str, task_index: int) -> str:
        """Name one write task's file (a retry of the task gets the same name)."""
        return f"{self.job_id}_{write_uuid}_{task_index:06}.parquet"


def _rel(output_path: str, uri: str) -> str:
    return uri[len(output_path.rstrip("/")) + 1 :] if uri.startswith(output_path.rstrip("/") + "/") else uri


def is_job_file(output_path: str, uri: str, job_id: str) -> bool:
    """Whether ``uri`` has exactly the name and place of a data file of ``job_id`` under ``output_path``."""
    rel = _rel(output_path, uri)
    if rel == uri or not _JOB_FILE.match(rel):
        return False
    return bool(re.fullmatch(re.escape(job_id) + _FILE_TAIL, rel.rsplit("/", 1)[-1]))


def job_files(settings: Settings, output_path: str, job_id: str) -> list[str]:
    """The data files under ``output_path`` that belong to ``job_id`` (URIs, sorted)."""
    uris = [to_uri(settings, output_path, f) for f in list_files(settings, output_path)]
    return [u for u in uris if is_job_file(output_path, u, job_id)]


@dataclass(frozen=True)
class OutputState:
    """Who wrote what under an output prefix."""

    committed_job_id: str | None
    """The job whose manifest is at the prefix, if any."""
    committed: list[str]
    """Files a platform manifest lists (its files and those it replaced) that still exist."""
    own: list[str]
    """Data files of this job id (an earlier attempt)."""
    foreign: list[str]
    """Everything else: never deleted, and a reason to refuse the path."""


def classify(output_path: str, existing: list[str], job_id: str, manifest: dict[str, Any] | None) -> OutputState:
    """Sort the files under ``output_path`` into committed, own and foreign (pure logic).

    Args:
        output_path: The canonical output prefix.
        existing: Every file under it (canonical URIs).
        job_id: The job about to write.
        manifest: The parsed ``_manifest.json`` if it is a valid platform manifest, else ``None``
            (then the manifest file itself counts as foreign).
    """
    base = output_path.rstrip("/")
    control = {f"{base}/{MANIFEST_NAME}", f"{base}/{LEASE_NAME}"} if manifest is not None else {f"{base}/{LEASE_NAME}"}
    listed: set[str] = set()
    if manifest is not None:
        listed = {str(f.get("path")) for f in manifest.get("files", []) if isinstance(f, dict)}
        listed |= {str(f) for f in manifest.get("replaced_files", [])}
    committed, own, foreign = [], [], []
    for uri in existing:
        if uri in control:
            continue
        if uri in listed and uri.startswith(base + "/"):
            committed.append(uri)
        elif is_job_file(base, uri, job_id):
            own.append(uri)
        else:
            foreign.append(uri)
    return OutputState(str(manifest.get("job_id")) if manifest else None, sorted(committed), sorted(own), sorted(foreign))


def read_platform_manifest(settings: Settings, output_path: str) -> dict[str, Any] | None:
    """The manifest at ``output_path`` as a dict, if one exists and has the platform's shape."""
    uri = f"{output_path.rstrip('/')}/{MANIFEST_NAME}"
    try:
        data = read_json(settings, uri)
    except (FileNotFoundError, ValueError, OSError):
        return None
    ok = isinstance(data, dict) and isinstance(data.get("job_id"), str) and isinstance(data.get("files"), list)
    return data if ok else None


def output_state(settings: Settings, output_path: str, job_id: str) -> OutputState:
    """List ``output_path`` and classify its files for ``job_id``."""
    existing = [to_uri(settings, output_path, f) for f in list_files(settings, output_path)]
    manifest = read_platform_manifest(settings, output_path) if existing else None
    return classify(output_path, existing, job_id, manifest)


def foreign_conflict(output_path: str, foreign: list[str]) -> Conflict:
    """The 409 for a prefix holding files the platform did not write."""
    shown = [_rel(output_path, f) for f in foreign[:3]]
    return Conflict(
        f"output_path {output_path} holds {len(foreign)} file(s) the platform did not write (e.g. {', '.join(shown)}); "
        "overwrite only replaces platform output, so choose another output_path or remove those files",
        detail={"output_path": output_path, "foreign_files": len(foreign), "examples": shown},
    )


def count_rows(settings: Settings, uris: list[str]) -> dict[str, int]:
    """Rows in each Parquet file, from its footer (no data pages are read)."""
    counts: dict[str, int] = {}
    for uri in uris:
        fs, path = resolve(settings, uri)
        with fs.open_input_file(path) as f:
            counts[uri] = pq.ParquetFile(f).metadata.num_rows
    return counts


def delete_files(settings: Settings, uris: list[str]) -> int:
    """Delete the given files; return how many went."""
    for uri in uris:
        fs, path = resolve(settings, uri)
        try:
            fs.delete_file(path)
        except FileNotFoundError:
            continue
    if uris:
        log.info("deleted %d files under %s", len(uris), uris[0].rsplit("/", 3)[0])
    return len(uris)


class ProgressPoller:
    """Report rows written so far by summing the footers of the job's finished files, every few seconds."""

    def __init__(
        self,
        settings: Settings,
        output_path: str,
        job_id: str,
        report: Callable[[int], None],
        interval_s: float = 2.0,
    ) -> None:
        self._settings, self._output, self._job_id = settings, output_path, job_id
        self._report, self._interval = report, interval_s
        self._counts: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"progress-{job_id}", daemon=True)
        self._last = -1

    def __enter__(self) -> ProgressPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                new = [u for u in job_files(self._settings, self._output, self._job_id) if u not in self._counts]
                self._counts.update(count_rows(self._settings, new))
                done = sum(self._counts.values())
                if done != self._last:
                    self._last = done
                    self._report(done)
            except Exception as exc:  # progress is best effort; the final count is authoritative
                log.debug("progress poll for %s failed: %s", self._job_id, exc)


# --- predictions as an Iceberg table (``output_table``) -------------------------------------------

SUMMARY_JOB_ID = "asgard.job_id"
"""Snapshot-summary key carrying the scoring job id: how a retry finds that its commit happened."""


def split_table(output_table: str) -> tuple[str, str]:
    """``"<namespace>.<table>"`` -> ``(namespace, table)``, both checked as catalog identifiers.

    Raises:
        InvalidRequest: Not two valid names.
    """
    from asgard_ray.errors import InvalidRequest
    from asgard_ray.gold import valid_identifier

    parts = output_table.split(".")
    if len(parts) != 2:
        raise InvalidRequest(f"output_table {output_table[:200]!r} must be '<namespace>.<table>'")
    return valid_identifier(parts[0], field="output_table namespace"), valid_identifier(parts[1], field="output_table")


def staging_path(settings: Settings, output_table: str, job_id: str) -> str:
    """Where a job with only ``output_table`` writes (and commits, with its manifest) its Parquet rows first."""
    ns, name = split_table(output_table)
    return settings.state_uri("scoring_staging", f"{ns}.{name}", job_id)


def job_snapshot(settings: Settings, output_table: str, job_id: str) -> int | None:
    """The snapshot of ``output_table`` whose summary names ``job_id`` (its earlier commit), if any."""
    from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

    from asgard_ray.gold import gold_catalog

    try:
        table = gold_catalog(settings).load_table(split_table(output_table))
    except (NoSuchTableError, NoSuchNamespaceError):
        return None
    for snap in table.snapshots():
        if snap.summary is not None and snap.summary.get(SUMMARY_JOB_ID) == job_id:
            return int(snap.snapshot_id)
    return None


def check_table_columns(settings: Settings, output_table: str, columns: list[str]) -> None:
    """Refuse (409) an existing ``output_table`` whose columns differ from what this job writes.

    Checked before the job runs so a mismatch fails before anything is written, rather than after
    the Parquet output is committed.
    """
    from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

    from asgard_ray.gold import gold_catalog

    try:
        table = gold_catalog(settings).load_table(split_table(output_table))
    except (NoSuchTableError, NoSuchNamespaceError):
        return

    def core(names: list[str]) -> set[str]:  # probability columns depend on the model's classes: compared on append
        return {c for c in names if c != "prediction_proba" and not c.startswith("proba_")}

    have = [f.name for f in table.schema().fields]
    if core(have) != core(columns):
        raise Conflict(
            f"output_table {output_table} has columns that differ from this job's output "
            f"(missing {sorted(set(columns) - set(have)) or 'none'}, extra {sorted(set(have) - set(columns)) or 'none'}); "
            "write to another output_table",
            detail={"output_table": output_table, "table_columns": have, "job_columns": columns},
        )


def commit_table(
    settings: Settings,
    output_table: str,
    output_path: str,
    files: list[str],
    layout_values: dict[str, str],
    summary: dict[str, str],
) -> tuple[int, bool]:
    """Append a committed Parquet output's rows to ``output_table`` in one commit; idempotent per job.

    The rows are exactly ``files`` (the manifest's), plus the ``model_version`` and ``score_date``
    partition values as string columns, so the table and the Parquet output hold the same rows.

    Returns:
        ``(snapshot_id, appended)``: ``appended`` is False when a snapshot with this job id already
        existed (a retry), and nothing was written.
    """
    import pyarrow as pa
    import pyarrow.dataset as pads

    from asgard_ray.gold import write_table

    job_id = summary[SUMMARY_JOB_ID]
    found = job_snapshot(settings, output_table, job_id)
    if found is not None:
        log.info("job %s already appended to %s as snapshot %d; not appending again", job_id, output_table, found)
        return found, False
    fs, _ = resolve(settings, output_path)
    paths = [resolve(settings, f)[1] for f in files]
    arrow = pads.dataset(paths, filesystem=fs, format="parquet", partitioning=None).to_table()
    for name, value in layout_values.items():
        arrow = arrow.append_column(name, pa.array([value] * arrow.num_rows, type=pa.string()))
    from pyiceberg.exceptions import CommitFailedException

    ns, name = split_table(output_table)
    for attempt in range(5):
        try:
            return write_table(settings, name, arrow, namespace=ns, summary=summary), True
        except CommitFailedException:  # another job committed first: look again for ours, then retry
            found = job_snapshot(settings, output_table, job_id)
            if found is not None:
                return found, False
            if attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")
