"""Request and response models of batch scoring (the seed's ``POST /mlops/serve/batch`` body and more)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from asgard_ray.features.specs import EntityColumns
from asgard_ray.jobs.records import JobStatus
from asgard_ray.types import ModelName

__all__ = [
    "MAX_INLINE_ENTITIES",
    "BatchJobList",
    "BatchJobStatus",
    "BatchScoreRequest",
    "BatchScoreResponse",
    "EntitiesSource",
    "JobState",
]

MAX_INLINE_ENTITIES = 100_000
"""Most entity rows ``entities_df`` may carry; larger sets go through ``entities_source``."""

JobState = JobStatus
"""The one job-status type (``asgard_ray.jobs.JobStatus``)."""
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class EntitiesSource(BaseModel):
    """Entity rows stored as Parquet: a path on S3 or a gold table (for sets too big to send inline)."""

    model_config = ConfigDict(extra="forbid")
    path: str | None = Field(default=None, description="Parquet file or prefix, e.g. s3://asgard/entities/2025-10-17/.")
    table_name: str | None = Field(default=None, description="A gold-layer table (resolved under GOLD_SCHEMA) instead of a path.")
    event_timestamp_column: str | None = Field(
        default=None,
        description="Per-row as-of time; default the column event_timestamp when present, else the job's start time.",
    )
    features_included: bool = Field(
        default=False,
        description="The rows already hold the model's feature columns: score them as they are, without a feature join.",
    )

    @model_validator(mode="after")
    def _one_location(self) -> EntitiesSource:
        if (self.path is None) == (self.table_name is None):
            raise ValueError("give exactly one of entities_source.path or entities_source.table_name")
        for value in (self.table_name, self.event_timestamp_column):
            if value is not None and not _NAME.match(value):
                raise ValueError(f"{value!r} is not a valid table or column name")
        return self


class BatchScoreRequest(BaseModel):
    """The seed's batch-scoring body; ``entities_source``, ``overwrite``, ``async`` and ``job_id`` are additions."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        protected_namespaces=(),
        json_schema_extra={
            "example": {
                "model_name": "churn_predictor",
                "model_version": "1",
                "feature_views": ["customer_features"],
                "entities_df": {"customer_id": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]},
                "output_path": "s3://my-bucket/predictions/batch_2025_10_17.parquet",
            }
        },
    )
    model_name: ModelName = Field(description="Registered model name.")
    model_version: str = Field(default="latest", description="A version number, an alias such as 'champion', or 'latest'.")
    feature_views: list[str] | None = Field(
        default=None, max_length=64, description="Feature views to read; default the ones the model was trained on."
    )
    entities_df: EntityColumns | None = Field(
        default=None,
        description=f"Inline entity ids per join key (optionally 'event_timestamp' per row); at most {MAX_INLINE_ENTITIES:,} rows.",
    )
    entities_source: EntitiesSource | None = Field(default=None, description="Entity rows on S3 or in a gold table, for large sets.")
    output_path: str | None = Field(
        default=None, description="Output prefix (a folder, even when it ends in .parquet) on an allowed bucket; or give output_table."
    )
    output_table: str | None = Field(
        default=None,
        description="Also (or instead) append the predictions to this Iceberg table, '<namespace>.<table>', in one commit per job.",
        examples=["predictions.churn_predictor"],
    )
    as_of_snapshot: dict[str, int] | None = Field(
        default=None,
        description="Pin gold tables to snapshots: table name -> Iceberg snapshot id (default each table's current snapshot).",
        examples=[{"customer_aggregates": 4358187011244383519}],
    )
    overwrite: bool = Field(default=False, description="Replace existing output under output_path (otherwise 409).")
    run_async: bool = Field(default=False, alias="async", description="Answer 202 at once and run in the background.")
    job_id: str | None = Field(default=None, description="Re-run (or resume after a crash) the job with this id; default a new id.")

    @field_validator("model_version", mode="before")
    @classmethod
    def _version(cls, v: Any) -> str:
        if isinstance(v, bool) or not isinstance(v, int | str) or not str(v).strip():
            raise ValueError("model_version must be a version number, an alias or 'latest'")
        text = str(v).strip()
        if len(text) > 256 or (text.isdigit() and int(text) > 2**63 - 1):
            raise ValueError("model_version must be a version number that fits 64 bits, an alias or 'latest'")
        return text

    @field_validator("job_id")
    @classmethod
    def _job_id(cls, v: str | None) -> str | None:
        if v is not None and not _JOB_ID.match(v):
            raise ValueError("job_id must be 1-64 letters, digits or '-', starting with a letter or digit")
        return v

    @field_validator("output_table")
    @classmethod
    def _output_table(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = v.split(".")
        if len(parts) != 2 or not all(_NAME.match(p) and len(p) <= 128 for p in parts):
            raise ValueError("output_table must be '<namespace>.<table>' (letters, digits and '_', at most 128 each)")
        return v

    @field_validator("as_of_snapshot", mode="before")
    @classmethod
    def _snapshots(cls, v: Any) -> Any:
        if v is None:
            return v
        if not isinstance(v, dict) or len(v) > 64:
            raise ValueError("as_of_snapshot maps gold table names to snapshot ids (at most 64)")
        for name, snap in v.items():
            if not isinstance(name, str) or not _NAME.match(name) or len(name) > 128:
                raise ValueError(f"as_of_snapshot: {str(name)[:100]!r} is not a valid table name")
            if isinstance(snap, bool) or not isinstance(snap, int) or not -(2**63) <= snap < 2**63:
                raise ValueError(f"as_of_snapshot[{name!r}] must be an integer snapshot id (int64)")
        return v

    @model_validator(mode="after")
    def _one_entity_input(self) -> BatchScoreRequest:
        if (self.entities_df is None) == (self.entities_source is None):
            raise ValueError("give exactly one of entities_df (inline ids) or entities_source (Parquet on S3)")
        if self.output_path is None and self.output_table is None:
            raise ValueError("give output_path (Parquet on S3), output_table (an Iceberg table) or both")
        return self


class BatchScoreResponse(BaseModel):
    """The seed's response, plus where to look."""

    job_id: str
    model_name: str
    model_version: str
    status: JobState
    output_path: str
    output_table: str | None = None
    alias: str | None = None
    run_id: str | None = None
    rows_total: int | None = None
    total_rows: int | None = Field(default=None, description="Rows written (completed jobs).")
    manifest_path: str | None = None
    feature_snapshots: dict[str, int | None] | None = Field(
        default=None, description="Gold table -> the Iceberg snapshot id the features were read from (null: a Parquet folder)."
    )
    output_snapshot_id: int | None = Field(default=None, description="The output_table snapshot this job committed (completed jobs).")
    execution_path: str | None = Field(
        default=None,
        description="warm: scored in process on a warm worker (small jobs); cluster: on Ray Data.",
    )
    queue_position: int | None = Field(default=None, description="While queued: 1 for the next scoring job to start.")
    error: str | None = None
    links: dict[str, str] = Field(default_factory=dict)


class BatchJobStatus(BaseModel):
    """``GET /mlops/serve/batch/{job_id}``: a job's state and progress."""

    job_id: str
    status: JobState
    model_name: str | None = None
    model_version: str | None = None
    output_path: str | None = None
    output_table: str | None = None
    rows_done: int = 0
    rows_total: int | None = None
    queue_position: int | None = Field(default=None, description="While queued: 1 for the next scoring job to start.")
    manifest_path: str | None = None
    error: str | None = None
    error_type: str | None = None
    created_at: datetime
    updated_at: datetime
    ray_task_name: str | None = None
    result: dict[str, Any] | None = None


class BatchJobList(BaseModel):
    """``GET /mlops/serve/batch``: recent jobs, newest first."""

    jobs: list[BatchJobStatus]
    total: int
