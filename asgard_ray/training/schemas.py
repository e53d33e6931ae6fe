"""Request and response models of training (the seed's ``POST /mlops/models`` body and answer)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "CLASSIFICATION_METRICS",
    "REGRESSION_METRICS",
    "DataSource",
    "Framework",
    "Hyperparameters",
    "ModelType",
    "SearchDimension",
    "SplitSpec",
    "TrainingJob",
    "TrainingMetrics",
    "TrainRequest",
    "TrainResponse",
    "metric_mode",
]

Framework = Literal["sklearn", "xgboost", "lightgbm"]
ModelType = Literal["classification", "regression"]

CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSION_METRICS = ("rmse", "mae", "r2")
_MINIMISED = {"log_loss", "rmse", "mae"}


def metric_mode(metric: str) -> Literal["min", "max"]:
    """Whether a metric is better low (losses, errors) or high."""
    return "min" if metric.removeprefix("train_") in _MINIMISED else "max"


class SearchDimension(BaseModel):
    """One tuned hyperparameter: a distribution (or grid) Ray Tune samples from."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["choice", "uniform", "loguniform", "randint", "grid"] = Field(
        description="choice/grid take `values`; uniform/loguniform take `low` < `high`; randint takes integers `low` <= x < `high`."
    )
    values: list[Any] | None = None
    low: float | None = None
    high: float | None = None

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
        if self.type == "randint" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError("a randint dimension needs integer `low` and `high`")
        return self


class Hyperparameters(BaseModel):
    """Fixed parameters (the seed) and an optional search space run as Ray Tune trials."""

    model_config = ConfigDict(extra="forbid")
    params: dict[str, Any] = Field(default_factory=dict, description="Fixed estimator parameters, used by every trial.")
    search_space: dict[str, SearchDimension] | None = Field(
        default=None, description="Tuned parameters; without it one trial runs with `params`."
    )
    num_trials: int | None = Field(
        default=None, ge=1, le=200,
        description="Samples drawn from the search space (default 4); a pure grid runs once over every combination.",
    )
    metric: str | None = Field(default=None, description="Validation metric that picks the best trial (default roc_auc / rmse).")
    mode: Literal["min", "max"] | None = Field(default=None, description="Whether `metric` is better low or high (default: from the metric).")
    max_concurrent_trials: int | None = Field(default=None, ge=1, le=64, description="Trials running at once (default: as many as CPUs allow).")

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
    validation_fraction: float = Field(default=0.2, gt=0.0, lt=0.9)
    seed: int = 42


class DataSource(BaseModel):
    """Where the training rows come from: Feast feature views, entity ids and the label column."""

    model_config = ConfigDict(extra="forbid")
    feature_views: list[str] = Field(min_length=1, examples=[["customer_features"]])
    entities: dict[str, list[Any]] = Field(
        description="`{join_key: [ids...]}`, optionally with `event_timestamp` (one per row).",
        examples=[{"customer_id": [1, 2, 3, 4, 5]}],
    )
    target_column: str = Field(examples=["churned"])
    event_timestamps: list[Any] | None = Field(default=None, description="One timestamp per entity row (default: now).")


class TrainRequest(BaseModel):
    """The seed's training request, plus search space, split, estimator choice and async mode."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    experiment_name: str = Field(min_length=1, examples=["customer_churn"])
    model_name: str = Field(min_length=1, examples=["churn_predictor"])
    framework: Framework = "sklearn"
    model_type: ModelType = "classification"
    estimator: str | None = Field(
        default=None, description="sklearn only: RandomForest (default), ExtraTrees, GradientBoosting, HistGradientBoosting, AdaBoost."
    )
    data_source: DataSource
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    split: SplitSpec = Field(default_factory=SplitSpec)
    tags: dict[str, str] = Field(default_factory=dict)
    async_: bool = Field(default=False, alias="async", description="Answer 202 with a job id instead of waiting.")

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


class TrainingJob(BaseModel):
    """A training job's state (``GET /mlops/jobs/{id}``; also the 202 answer of an async request)."""

    job_id: str
    kind: str = "training"
    status: Literal["pending", "running", "completed", "failed"]
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
