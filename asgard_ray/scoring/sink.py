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
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import pyarrow.parquet as pq
from ray.data.datasource import FilenameProvider

from asgard_ray.config import Settings
from asgard_ray.errors import InvalidRequest
from asgard_ray.storage import list_files, parse_uri, resolve

__all__ = [
    "MANIFEST_NAME",
    "JobFilenameProvider",
    "OutputLayout",
    "ProgressPoller",
    "check_output_path",
    "count_rows",
    "delete_files",
    "job_files",
]

log = logging.getLogger(__name__)

MANIFEST_NAME = "_manifest.json"


def check_output_path(settings: Settings, output_path: str) -> str:
    """Normalise ``output_path`` and check it is an allowed place to write.

    S3 paths must be on one of ``ASGARD_OUTPUT_BUCKETS``; local paths only work in embedded mode.

    Raises:
        InvalidRequest: Unsupported scheme, bucket not allowed, local path outside embedded mode.
    """
    raw = output_path.strip()
    if not raw:
        raise InvalidRequest("output_path is empty; give an s3://<bucket>/<prefix> location")
    parsed = parse_uri(raw)
    if parsed.scheme == "s3":
        allowed = settings.asgard_output_buckets
        if parsed.bucket not in allowed:
            raise InvalidRequest(
                f"output_path bucket {parsed.bucket!r} is not allowed; write under one of {', '.join(allowed)} "
                "(configure ASGARD_OUTPUT_BUCKETS)",
                detail={"output_path": output_path, "allowed_buckets": allowed},
            )
        if parsed.path == parsed.bucket:
            raise InvalidRequest(f"output_path {output_path!r} is a whole bucket; add a prefix such as s3://{parsed.bucket}/predictions/run1")
        return parsed.uri
    if not settings.embedded:
        raise InvalidRequest("local output paths are only allowed in embedded mode; use s3://<bucket>/<prefix>")
    if not raw.startswith("/") and not raw.startswith("file:"):
        raise InvalidRequest(f"local output_path {output_path!r} must be absolute")
    return parsed.path.rstrip("/")


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


def _uri(settings: Settings, output_path: str, fs_path: str) -> str:
    return f"s3://{fs_path}" if parse_uri(output_path).scheme == "s3" else fs_path


def job_files(settings: Settings, output_path: str, job_id: str) -> list[str]:
    """The data files under ``output_path`` that belong to ``job_id`` (URIs, sorted)."""
    files = list_files(settings, output_path)
    return [_uri(settings, output_path, f) for f in files if f.rsplit("/", 1)[-1].startswith(f"{job_id}_") and f.endswith(".parquet")]


def foreign_files(settings: Settings, output_path: str, job_id: str) -> list[str]:
    """Files under ``output_path`` not written by ``job_id`` (other jobs' output, any manifest)."""
    return [
        _uri(settings, output_path, f)
        for f in list_files(settings, output_path)
        if not f.rsplit("/", 1)[-1].startswith(f"{job_id}_")
    ]


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
