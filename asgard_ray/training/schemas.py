"""Request and response models of training (the seed's ``POST /mlops/models`` body and answer).

Every number that comes in is finite and in range here (search-space bounds, fixed parameters,
choice values, split fraction and seed), ids fit int64 and timestamps are in range, so hostile input
is a 422 at the edge. Work limits that depend on settings (trial cap, estimator parameter bounds)
are checked by ``asgard_ray.training.estimators.check_work_limits`` before a job starts.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from asgard_ray.features.specs import EntityColumns, check_event_times
from asgard_ray.jobs.records import JobStatus
from asgard_ray.lineage import UserTags
from asgard_ray.types import INT64_MAX, INT64_MIN, FiniteFloat, ModelName, check_bounded_json

__all__ = [
    "CLASSIFICATION_METRICS",
    "MAX_SEARCH_VALUES",
    "MAX_SNAPSHOT_PINS",
    "REGRESSION_METRICS",
    "SEED_MAX",
    "DataSource",
    "ExecutionSpec",
    "Framework",
    "Hyperparameters",
    "ModelType",
    "SearchDimension",
    "SplitSpec",
    "TrainRequest",
    "TrainResponse",
    "TrainingJob",
    "TrainingMetrics",
    "check_snapshot_pins",
    "metric_mode",
]

Framework = Literal["sklearn", "xgboost", "lightgbm"]
ModelType = Literal["classification", "regression"]

CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSION_METRICS = ("rmse", "mae", "r2")
_MINIMISED = {"log_loss", "rmse", "mae"}


MAX_SEARCH_VALUES = 1000
"""Most values one choice or grid dimension may list."""
SEED_MAX = 2**31 - 1
"""Largest seed / random_state every framework accepts."""


def _check_json_numbers(value: Any, what: str) -> Any:
    """Bounded JSON whose integers fit int64 (floats are already finite by ``check_bounded_json``)."""
    check_bounded_json(value, what, max_depth=8, max_keys=5000, max_bytes=256 * 1024)
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, int) and not isinstance(item, bool) and not INT64_MIN <= item <= INT64_MAX:
            raise ValueError(f"{what} holds the integer {item}, which does not fit 64 bits")
    return value


def _params(value: dict[str, Any]) -> dict[str, Any]:
    return _check_json_numbers(value, "params")


def _values(value: list[Any] | None) -> list[Any] | None:
    return None if value is None else _check_json_numbers(value, "values")


ParamValues = Annotated[dict[str, Any], AfterValidator(_params)]
"""Fixed estimator parameters: bounded JSON, finite numbers, int64 integers."""


def metric_mode(metric: str) -> Literal["min", "max"]:
    """Whether a metric is better low (losses, errors) or high."""
    return "min" if metric.removeprefix("train_") in _MINIMISED else "max"


class SearchDimension(BaseModel):
    """One tuned hyperparameter: a distribution to sample from (seeded with ``split.seed``), or a grid."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["choice", "uniform", "loguniform", "randint", "grid"] = Field(
        description="choice/grid take `values`; uniform/loguniform take `low` < `high`; randint takes integers `low` <= x < `high`."
    )
    values: Annotated[list[Any] | None, AfterValidator(_values)] = Field(default=None, max_length=MAX_SEARCH_VALUES)
    low: FiniteFloat | None = None
    high: FiniteFloat | None = None

    @model_validator(mode="after")
    def _check(self) -> SearchDimension:
        if self.type in ("choice", "grid"):
            if not self.values:
                raise ValueError(f"a {self.type} dimension needs a non-empty `values` list")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} dimension needs `low` and `high`")
        if self.low >= self.high:
            raise ValueError(f"`low` ({self.low}) must be below `high` ({self.high})")
        if self.type == "loguniform" and self.low <= 0:
            raise ValueError("a loguniform dimension needs `low` > 0")
        if self.type == "randint":
            if self.low != int(self.low) or self.high != int(self.high):
                raise ValueError("a randint dimension needs integer `low` and `high`")
            if not (self.low >= INT64_MIN and self.high <= INT64_MAX):
                raise ValueError("a randint dimension needs `low` and `high` within signed 64-bit integers")
        return self

    def upper(self) -> float | None:
        """The largest value this dimension can produce, when numeric (randint's `high` is exclusive)."""
        if self.type == "randint" and self.high is not None:
            return self.high - 1
        return self.high


class Hyperparameters(BaseModel):
    """Fixed parameters (the seed) and an optional search space, each configuration one trial on Ray."""

    model_config = ConfigDict(extra="forbid")
    params: ParamValues = Field(default_factory=dict, description="Fixed estimator parameters, used by every trial.")
    search_space: dict[str, SearchDimension] | None = Field(
        default=None, description="Tuned parameters; without it one trial runs with `params`."
    )
    num_trials: int | None = Field(
        default=None,
        ge=1,
        le=200,
        description="Samples drawn from the search space (default 4); a pure grid runs once over every combination.",
    )
    metric: str | None = Field(default=None, description="Validation metric that picks the best trial (default roc_auc / rmse).")
    mode: Literal["min", "max"] | None = Field(
        default=None, description="Whether `metric` is better low or high (default: from the metric)."
    )
    max_concurrent_trials: int | None = Field(
        default=None, ge=1, le=64, description="Trials running at once (default: as many as CPUs allow)."
    )

    @model_validator(mode="after")
    def _disjoint(self) -> Hyperparameters:
        both = sorted(set(self.params) & set(self.search_space or {}))
        if both:
            raise ValueError(f"parameter(s) {', '.join(both)} are both fixed in `params` and tuned in `search_space`; keep one")
        return self


class SplitSpec(BaseModel):
    """How rows are split into training and validation sets."""

    model_config = ConfigDict(extra="forbid")
    strategy: Literal["auto", "stratified", "random", "time"] = Field(
        default="auto", description="auto: stratified for classification, random for regression; time: the latest rows validate."
    )
    validation_fraction: FiniteFloat = Field(default=0.2, gt=0.0, lt=0.9)
    seed: int = Field(default=42, ge=0, le=SEED_MAX)


class ExecutionSpec(BaseModel):
    """How trials run: in memory (one Ray task per trial) or data-parallel (a gang of workers per trial)."""

    model_config = ConfigDict(extra="forbid")
    mode: Literal["auto", "in_memory", "distributed"] = Field(
        default="auto",
        description="auto: data-parallel for xgboost/lightgbm from ASGARD_TRAIN_DISTRIBUTED_ROWS entity rows up, else in memory.",
    )
    num_workers: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="Workers per data-parallel trial (default ASGARD_TRAIN_DEFAULT_WORKERS, at most ASGARD_TRAIN_MAX_WORKERS).",
    )
    sample_rows: int | None = Field(
        default=None,
        ge=1,
        le=INT64_MAX,
        description="Train in memory on a seeded random sample of this many entity rows (recorded in the run and the answer).",
    )


MAX_SNAPSHOT_PINS = 64
"""Most gold tables one request may pin."""
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def check_snapshot_pins(value: Any) -> dict[str, int]:
    """An ``as_of_snapshot`` mapping: gold table names (letters, digits, ``_``) to int64 snapshot ids.

    Raises:
        ValueError: Not a mapping, too many entries, a bad table name, or an id that is not an int64.
    """
    if not isinstance(value, dict) or len(value) > MAX_SNAPSHOT_PINS:
        raise ValueError(f"as_of_snapshot maps gold table names to snapshot ids (at most {MAX_SNAPSHOT_PINS})")
    for name, snap in value.items():
        if not isinstance(name, str) or not _TABLE_NAME.match(name):
            raise ValueError(f"as_of_snapshot: {str(name)[:100]!r} is not a valid table name (letters, digits and '_', at most 128)")
        if isinstance(snap, bool) or not isinstance(snap, int) or not INT64_MIN <= snap <= INT64_MAX:
            raise ValueError(f"as_of_snapshot[{name!r}] must be an integer snapshot id (int64)")
    return value


class DataSource(BaseModel):
    """Where the training rows come from: Feast feature views, entity ids and the label column."""

    model_config = ConfigDict(extra="forbid")
    feature_views: list[str] = Field(min_length=1, max_length=64, examples=[["customer_features"]])
    entities: EntityColumns = Field(
        description="`{join_key: [ids...]}`, optionally with `event_timestamp` (one per row).",
        examples=[{"customer_id": [1, 2, 3, 4, 5]}],
    )
    target_column: str = Field(examples=["churned"])
    event_timestamps: list[Any] | None = Field(default=None, description="One timestamp per entity row (default: now).")

    @field_validator("event_timestamps")
    @classmethod
    def _times(cls, v: list[Any] | None) -> list[Any] | None:
        return None if v is None else check_event_times(v, "event_timestamps")


class TrainRequest(BaseModel):
    """The seed's training request, plus search space, split, estimator choice and async mode."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    experiment_name: str = Field(min_length=1, max_length=256, examples=["customer_churn"])
    model_name: ModelName
    framework: Framework = "sklearn"
    model_type: ModelType = "classification"
    estimator: str | None = Field(
        default=None, description="sklearn only: RandomForest (default), ExtraTrees, GradientBoosting, HistGradientBoosting, AdaBoost."
    )
    data_source: DataSource
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    split: SplitSpec = Field(default_factory=SplitSpec)
    tags: UserTags = Field(default_factory=dict, description="Tags of the MLflow run (the `asgard.` prefix is reserved).")
    execution: ExecutionSpec = Field(default_factory=ExecutionSpec, description="In-memory or data-parallel trials, workers, sampling.")
    as_of_snapshot: dict[str, int] | None = Field(
        default=None,
        description=(
            "Pin gold tables to Iceberg snapshots: table name -> snapshot id (default: each table's current snapshot, "
            "resolved once when the job starts). A run's pins are its `asgard.gold.<table>.snapshot_id` tags; "
            "sending them back reproduces its training set."
        ),
        examples=[{"customer_aggregates": 4358187011244383519}],
    )
    async_: bool = Field(default=False, alias="async", description="Answer 202 with a job id instead of waiting.")

    @field_validator("as_of_snapshot", mode="before")
    @classmethod
    def _snapshots(cls, v: Any) -> Any:
        return None if v is None else check_snapshot_pins(v)

    @field_validator("framework", mode="before")
    @classmethod
    def _framework(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("model_type", mode="before")
    @classmethod
    def _model_type(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v


class TrainingMetrics(BaseModel):
    """The seed's nesting: ``metrics.metrics``."""

    metrics: dict[str, float]


class TrainResponse(BaseModel):
    """The seed's training answer, plus trials, best parameters, links and warnings."""

    run_id: str
    experiment_id: str
    model_name: str
    model_uri: str = Field(description="`runs:/<run_id>/model` (loads with mlflow.pyfunc.load_model).")
    logged_model_uri: str | None = Field(default=None, description="MLflow 3's `models:/m-<id>` for the same model.")
    metrics: TrainingMetrics
    artifact_uri: str
    status: Literal["completed"] = "completed"
    job_id: str | None = None
    num_trials: int
    failed_trials: int = 0
    best_params: dict[str, Any]
    metric: str = Field(description="The metric that picked the best trial.")
    training_rows: int
    validation_rows: int
    feature_columns: list[str]
    mlflow_run_url: str
    warnings: list[str] = Field(default_factory=list)
    execution: dict[str, Any] = Field(
        default_factory=dict, description="The mode that ran (in_memory / distributed), its workers and any sample."
    )
    feature_snapshots: dict[str, int | None] = Field(
        default_factory=dict,
        description="Gold table -> the Iceberg snapshot id the training set was read from (null: a Parquet folder).",
    )


class TrainingJob(BaseModel):
    """A training job's state (``GET /mlops/jobs/{id}``; also the 202 answer of an async request)."""

    job_id: str
    kind: str = "training"
    status: JobStatus
    queue_position: int | None = Field(default=None, description="While queued: 1 for the next job of its kind to start.")
    created_at: datetime
    updated_at: datetime
    trials_total: int | None = None
    trials_done: int = 0
    trials_failed: int = 0
    metric: str | None = None
    best_metric: float | None = None
    run_id: str | None = None
    error: str | None = None
    result: dict[str, Any] | None = None
    links: dict[str, str] = Field(default_factory=dict)
