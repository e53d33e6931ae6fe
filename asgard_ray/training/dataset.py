"""The training set as Ray Data blocks: the point-in-time retrieval, split and profiled without pandas on the driver.

Data-parallel training (``asgard_ray.training.distributed``) never collects the training set into
one process. This module builds it as Ray Datasets:

* **Retrieval.** ``asgard_ray.features.start_retrieval`` (the same retrieval the in-memory frame
  uses) pins each gold table once and answers with a job whose ``to_ray_dataset()`` runs the as-of
  join in Ray tasks against indexes shared through the object store, so the joined rows stay Ray
  Data blocks.
* **Preparation.** Each batch goes through the in-memory mode's own checks (``data.feature_matrix``:
  numeric features cast to float64) and label encoding against the class list found by
  ``Dataset.unique``; unlabelled rows are dropped (counted, and reported as a warning).
* **Split.** By a seeded hash of the entity row (join keys and timestamp, ``split.split_keys``, the
  in-memory mode's ``random`` rule): the same entity row always falls on the same side. ``time`` puts the latest rows in validation, at
  a cutoff from the quantile of a bounded random sample of timestamps. Stratification needs the whole frame, so ``auto``
  and ``stratified`` use the hash split here (the answer says ``hash``).
* **Reference profile.** Bin edges come from a bounded random sample (``numeric_profile``, as in
  memory); counts, missing rates, mean, std, min and max are exact over every row, computed with
  drift's own per-batch partials (``monitoring.aggregate.partial_stats`` / ``combine``), so training's
  histogram and drift's histogram are the same code.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from asgard_ray.errors import InvalidRequest
from asgard_ray.training.data import MIN_SPLIT_ROWS, encode_labels, feature_matrix
from asgard_ray.training.split import split_keys
from asgard_ray.training.target import check_classes

if TYPE_CHECKING:
    from ray.data import Dataset

    from asgard_ray.config import Settings
    from asgard_ray.features import TrainingFrame
    from asgard_ray.training.schemas import TrainRequest

__all__ = [
    "LABEL",
    "PROFILE_SAMPLE_ROWS",
    "SPLIT",
    "ShardedData",
    "build_training_dataset",
    "in_bounds",
    "prepare_dataset",
    "profile_dataset",
    "sample_frame",
]

log = logging.getLogger(__name__)

LABEL = "__label"
"""The encoded label column of a prepared dataset (class index, or the numeric target)."""
SPLIT = "__split"
"""The split column of a prepared dataset: the entity hash in [0, 1), or the event time (ns) for a time split."""
PROFILE_SAMPLE_ROWS = 100_000
"""Rows sampled to place a profile's bin edges and quantiles (counts are exact over every row)."""


@dataclass
class ShardedData:
    """The prepared training set as one materialized Ray Dataset, and which of its rows train and validate.

    Every row carries ``__split`` (its entity hash, or its event time for a time split); a row trains
    when that value is in ``train_bounds`` and validates when it is in ``val_bounds``. The data-parallel
    workers apply the bounds to their own shard, so the split costs no pass of its own.
    """

    settings: Settings
    prepared: Dataset
    train_bounds: tuple[float | None, float | None]
    val_bounds: tuple[float | None, float | None] | None
    feature_columns: list[str]
    model_type: str
    classes: list[Any] | None
    split: str
    train_rows: int
    val_rows: int
    meta: TrainingFrame
    warnings: list[str] = field(default_factory=list)

    @property
    def has_validation(self) -> bool:
        """Whether a held-out validation set exists."""
        return self.val_bounds is not None and self.val_rows > 0

    @property
    def n_classes(self) -> int | None:
        """Number of classes (classification), else None."""
        return len(self.classes) if self.classes is not None else None


def in_bounds(values: np.ndarray, bounds: tuple[float | None, float | None]) -> np.ndarray:
    """Which split values fall in ``[low, high)`` (an open end: no limit)."""
    low, high = bounds
    keep = np.ones(len(values), dtype=bool)
    if low is not None:
        keep &= values >= low
    if high is not None:
        keep &= values < high
    return keep


def _prepare(
    batch: pd.DataFrame,
    *,
    feature_columns: list[str],
    label: str,
    classes: list[Any] | None,
    keys: list[str],
    ts: str,
    seed: int,
    by_time: bool,
) -> pd.DataFrame:
    """One batch: labelled rows only, float64 features, encoded label, the split column (vectorised)."""
    batch = batch[batch[label].notna()].reset_index(drop=True)
    out = feature_matrix(batch, feature_columns, [*keys, ts, label])
    if classes is not None:
        out[LABEL] = encode_labels(batch[label].to_numpy(), classes)
    else:
        y = pd.to_numeric(batch[label], errors="coerce")
        if y.isna().any():
            raise InvalidRequest(f"label {label!r} is not numeric; regression needs a numeric target")
        out[LABEL] = y.to_numpy(dtype="float64")
    if by_time:
        out[SPLIT] = pd.DatetimeIndex(pd.to_datetime(batch[ts], utc=True)).as_unit("ns").asi8.astype("float64")
    else:
        out[SPLIT] = split_keys(batch, keys, ts, seed)
    return out


def _count_sides(batch: pd.DataFrame, *, train: tuple[Any, Any], val: tuple[Any, Any] | None) -> pd.DataFrame:
    values = batch[SPLIT].to_numpy()
    return pd.DataFrame({"train": [int(in_bounds(values, train).sum())], "val": [int(in_bounds(values, val).sum()) if val else 0]})


def _sides(prepared: Dataset, train: tuple[Any, Any], val: tuple[Any, Any] | None) -> tuple[int, int]:
    counts = (
        prepared.select_columns([SPLIT])
        .map_batches(
            _count_sides,  # type: ignore[arg-type]  # Ray stubs cannot type fn_kwargs functions
            batch_format="pandas",
            batch_size=None,
            fn_kwargs={"train": train, "val": val},
        )
        .to_pandas()
    )
    return int(counts["train"].sum()), int(counts["val"].sum())


def build_training_dataset(settings: Settings, request: TrainRequest) -> ShardedData:
    """Retrieve the request's training set point-in-time correct as a Ray Dataset, prepared and materialized.

    Raises:
        InvalidRequest: No labelled rows, a non-numeric feature or regression label, or ``stratified`` for regression.
    """
    from asgard_ray.features import start_retrieval, training_columns

    ds_spec = request.data_source
    job, meta = start_retrieval(
        settings,
        ds_spec.feature_views,
        ds_spec.entities,
        event_timestamps=ds_spec.event_timestamps,
        label=ds_spec.target_column,
        as_of_snapshot=request.as_of_snapshot,
    )
    return prepare_dataset(settings, job.to_ray_dataset().select_columns(training_columns(meta)), meta, request)


def prepare_dataset(settings: Settings, raw: Dataset, meta: TrainingFrame, request: TrainRequest) -> ShardedData:
    """Prepare retrieved rows (keys, timestamp, features, label) for data-parallel trials, in one pass.

    The rows are read once (materialized), their classes found, then prepared and materialized; the
    split is only counted (one pass over one column).

    Raises:
        InvalidRequest: No labelled rows, a non-numeric feature or regression label, too many classes,
            ``stratified`` for regression, or a split that leaves a side empty.
    """
    split = request.split
    label = meta.label or request.data_source.target_column
    raw = raw.materialize()
    total = raw.count()
    warnings: list[str] = []
    classes: list[Any] | None = None
    if request.model_type == "classification":
        classes = sorted(v.item() if hasattr(v, "item") else v for v in raw.unique(label) if v is not None and v == v)
        check_classes(label, classes, settings.asgard_max_classes)
        if len(classes) < 2:
            warnings.append(f"the label {label!r} has a single class in these rows; the model cannot separate classes")
    strategy = split.strategy
    if strategy == "stratified" and request.model_type != "classification":
        raise InvalidRequest("split strategy 'stratified' needs model_type classification; use random or time")
    by_time = strategy == "time"
    prepared = raw.map_batches(
        _prepare,  # type: ignore[arg-type]  # Ray stubs cannot type fn_kwargs functions
        batch_format="pandas",
        batch_size=None,
        fn_kwargs={
            "feature_columns": meta.feature_columns,
            "label": label,
            "classes": classes,
            "keys": meta.join_keys,
            "ts": meta.timestamp_column,
            "seed": split.seed,
            "by_time": by_time,
        },
    ).materialize()
    labelled = prepared.count()
    if labelled == 0:
        raise InvalidRequest(
            f"the training set is empty: none of the {total} entity rows has a {label!r} value at its timestamp; "
            "check the entity ids and event_timestamps against the source table"
        )
    if labelled < total:
        warnings.append(f"dropped {total - labelled} of {total} entity rows with no {label!r} value")
    features = list(meta.feature_columns)
    if labelled < MIN_SPLIT_ROWS:
        warnings.append(f"only {labelled} labelled rows (< {MIN_SPLIT_ROWS}): trained on all of them with no validation set")
        return ShardedData(
            settings, prepared, (None, None), None, features, request.model_type, classes, "none", labelled, 0, meta, warnings
        )
    train_bounds: tuple[float | None, float | None]
    val_bounds: tuple[float | None, float | None]
    if by_time:
        # the cutoff is the (1 - fraction) quantile of a bounded sample of timestamps (exact up to that size)
        stamps = sample_frame(prepared.select_columns([SPLIT]), labelled, PROFILE_SAMPLE_ROWS, seed=split.seed)[SPLIT]
        cut = float(np.quantile(stamps.to_numpy(dtype=np.float64), 1.0 - split.validation_fraction))
        train_bounds, val_bounds, used = (None, cut), (cut, None), "time"
    else:
        frac = split.validation_fraction
        train_bounds, val_bounds, used = (frac, None), (None, frac), "hash"
        if strategy == "stratified":
            warnings.append("data-parallel training splits by a hash of the entity row, not stratified")
    train_rows, val_rows = _sides(prepared, train_bounds, val_bounds)
    if by_time and train_rows == 0:  # the cutoff fell on the earliest timestamp: validate on the later ones only
        train_bounds, val_bounds = (None, cut + 1), (cut + 1, None)
        train_rows, val_rows = _sides(prepared, train_bounds, val_bounds)
    if train_rows == 0 or val_rows == 0:
        raise InvalidRequest(
            f"the {used} split left {train_rows} training and {val_rows} validation rows; "
            "change split.validation_fraction or split.strategy"
        )
    log.info(
        "training dataset: %d rows (%d train, %d validation, %s split), %d features", labelled, train_rows, val_rows, used, len(features)
    )
    return ShardedData(
        settings, prepared, train_bounds, val_bounds, features, request.model_type, classes, used, train_rows, val_rows, meta, warnings
    )


def sample_frame(ds: Dataset, rows: int, max_rows: int, seed: int = 0) -> pd.DataFrame:
    """A seeded random sample of about ``max_rows`` rows of ``ds`` (all of it when smaller), as one frame."""
    if rows <= max_rows:
        return ds.to_pandas()
    frac = min(1.0, max_rows / rows)
    return ds.random_sample(frac, seed=seed).to_pandas().head(max_rows)


def _train_side(batch: pd.DataFrame, *, bounds: tuple[Any, Any]) -> pd.DataFrame:
    return batch[in_bounds(batch[SPLIT].to_numpy(), bounds)].drop(columns=SPLIT)


def profile_dataset(data: ShardedData, sample_rows: int = PROFILE_SAMPLE_ROWS) -> dict[str, dict[str, Any]]:
    """``numeric_profile`` of every feature over the training rows, with exact counts and moments.

    The bin edges and quantiles come from a random sample of ``sample_rows``; the counts per bin,
    missing values, mean, std, min and max are summed over every block with drift's partials.
    """
    from asgard_ray.monitoring.aggregate import AggregateSpec, column_spec, combine, partial_stats
    from asgard_ray.monitoring.profile import numeric_profile

    columns = list(data.feature_columns)
    ds = data.prepared.select_columns([*columns, SPLIT]).map_batches(
        _train_side,  # type: ignore[arg-type]  # Ray stubs cannot type fn_kwargs functions
        batch_format="pandas",
        batch_size=None,
        fn_kwargs={"bounds": data.train_bounds},
    )
    rows = data.train_rows
    sample = sample_frame(ds, rows, sample_rows)
    profiles = {c: numeric_profile(sample[c]) for c in columns}
    spec = AggregateSpec(columns=tuple(column_spec(c, profiles[c]) for c in columns), sample_size=1)
    blobs = ds.map_batches(partial_stats, batch_format="pandas", fn_kwargs={"spec": spec}).take_all()  # type: ignore[arg-type]  # Ray stubs cannot type fn_kwargs functions
    total = combine([row["partial"] for row in blobs], spec)
    n = int(total["n"])
    for c in columns:
        stats = total["columns"].get(c)
        prof = profiles[c]
        if stats is None or not prof.get("bin_edges"):
            continue
        finite = n - int(stats["missing"])
        mean = stats["sum"] / finite if finite else None
        var = max(stats["sumsq"] / finite - mean * mean, 0.0) if finite else None  # type: ignore[operator]
        prof.update(
            n=n,
            missing=int(stats["missing"]),
            missing_rate=(stats["missing"] / n) if n else 0.0,
            counts=[int(x) for x in stats["counts"]],
            mean=mean,
            std=math.sqrt(var) if var is not None else None,
            min=float(stats["min"]),
            max=float(stats["max"]),
            sample_rows=len(sample),
        )
    return profiles
