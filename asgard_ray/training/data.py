"""Turn a retrieved training frame into train and validation sets: one function for tuning and refit.

Only the frame's feature columns are model inputs (never join keys or timestamps); they are cast to
float64 so the model's signature accepts missing values at scoring time. Classification labels are
encoded as indices into the sorted class list (xgboost needs 0..k-1), which is logged as a tag.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from asgard_ray.errors import InvalidRequest
from asgard_ray.training.schemas import SplitSpec
from asgard_ray.training.split import HASH_STRATEGIES, split_keys
from asgard_ray.training.target import check_classes, check_inputs

if TYPE_CHECKING:
    from asgard_ray.features import TrainingFrame

__all__ = ["MIN_SPLIT_ROWS", "PreparedData", "encode_labels", "entity_hash", "feature_matrix", "prepare_data"]

log = logging.getLogger(__name__)

MIN_SPLIT_ROWS = 20
"""Below this many labelled rows the platform trains on all of them and reports training metrics."""


@dataclass
class PreparedData:
    """Train and validation sets, ready for any framework."""

    X_train: pd.DataFrame
    y_train: np.ndarray
    X_val: pd.DataFrame | None
    y_val: np.ndarray | None
    feature_columns: list[str]
    model_type: str
    classes: list[Any] | None = None
    split: str = "none"
    warnings: list[str] = field(default_factory=list)
    feature_dtypes: dict[str, str] = field(default_factory=dict)
    """The feature views' dtypes of the columns (``Int64``, ``Float64``), for the logged signature."""

    @property
    def has_validation(self) -> bool:
        """Whether a held-out validation set exists (False for tiny data)."""
        return self.X_val is not None and len(self.X_val) > 0

    @property
    def eval_set(self) -> tuple[pd.DataFrame, np.ndarray]:
        """The rows that score a trial: validation, or training rows when there is no validation set."""
        if self.has_validation:
            return self.X_val, self.y_val  # type: ignore[return-value]
        return self.X_train, self.y_train

    def decode(self, encoded: np.ndarray) -> np.ndarray:
        """Map encoded class indices back to the original labels."""
        if self.classes is None:
            return encoded
        return np.asarray(self.classes, dtype=object)[np.asarray(encoded, dtype=int)]


def entity_hash(frame: TrainingFrame) -> str:
    """sha256 over the sorted row hashes of the entity ids and timestamps trained on (order-independent)."""
    rows = np.sort(split_keys(frame.df, list(frame.join_keys), frame.timestamp_column, seed=0))
    return hashlib.sha256(rows.tobytes()).hexdigest()


def feature_matrix(df: pd.DataFrame, columns: list[str], forbidden: list[str | None]) -> pd.DataFrame:
    """The model's inputs: ``columns`` of ``df`` as float64, never a key, timestamp or label (``forbidden``).

    Raises:
        InvalidRequest: A forbidden column is among ``columns``, or a column is not numeric.
    """
    check_inputs(columns, forbidden)
    out = {}
    for col in columns:
        series = df[col]
        if series.dtype == np.float64:  # already what the models take: no conversion, no copy here
            out[col] = series.to_numpy()
            continue
        if series.dtype == bool or str(series.dtype) == "boolean":
            series = series.astype("float64")
        converted = pd.to_numeric(series, errors="coerce")
        if converted.isna().sum() > series.isna().sum():
            raise InvalidRequest(f"feature {col!r} is not numeric (dtype {series.dtype}); the tree models need numbers")
        out[col] = converted.to_numpy(dtype="float64")
    # one float64 block (a single copy, which the fit reads as one matrix), indexed like ``df``
    frame = pd.DataFrame(np.column_stack(list(out.values())) if out else np.empty((len(df), 0)), columns=list(out))
    frame.index = df.index
    return frame


def encode_labels(values: np.ndarray, classes: list[Any]) -> np.ndarray:
    """Each label's index in the sorted ``classes`` (vectorised; xgboost wants 0..k-1)."""
    codes = pd.Categorical(pd.Series(values, dtype=object), categories=pd.Index(classes, dtype=object)).codes
    return np.asarray(codes, dtype=np.int64)


def _split(
    X: pd.DataFrame, y: np.ndarray, timestamps: pd.Series, keys: np.ndarray, model_type: str, spec: SplitSpec, warnings: list[str]
) -> tuple[np.ndarray, np.ndarray, str]:
    """Row positions of the training and validation sets and the strategy used.

    ``random`` validates on the rows whose entity hash falls below the fraction (``split.split_keys``),
    the rule the data-parallel mode uses too, so both modes validate on the same rows.
    """
    from sklearn.model_selection import train_test_split

    n = len(X)
    positions = np.arange(n)
    strategy = spec.strategy
    if strategy == "auto":
        strategy = "stratified" if model_type == "classification" else "random"
    if strategy in HASH_STRATEGIES:
        held = keys < spec.validation_fraction
        if 0 < int(held.sum()) < n:
            return positions[~held], positions[held], "random"
        warnings.append("the entity-hash split left one side empty (too few rows); used a seeded random split")
        train, held = train_test_split(positions, test_size=spec.validation_fraction, random_state=spec.seed)
        return np.sort(train), np.sort(held), "random"
    if strategy == "time":
        order = np.argsort(timestamps.to_numpy(), kind="stable")
        n_val = max(1, round(n * spec.validation_fraction))
        cutoff = timestamps.iloc[order[n - n_val]]
        train = order[: n - n_val]
        val = order[n - n_val :]
        log.info("time split at %s: %d train, %d validation rows", cutoff, len(train), len(val))
        return np.sort(train), np.sort(val), "time"
    if strategy == "stratified" and model_type != "classification":
        raise InvalidRequest("split strategy 'stratified' needs model_type classification; use random or time")
    stratify = None
    if strategy == "stratified":
        _, counts = np.unique(y, return_counts=True)
        n_val = int(np.ceil(n * spec.validation_fraction))
        if counts.min() < 2 or n_val < len(counts) or n - n_val < len(counts):
            warnings.append("a class has too few rows to stratify; used a random split instead")
            strategy = "random"
        else:
            stratify = y
    train, val = train_test_split(positions, test_size=spec.validation_fraction, random_state=spec.seed, stratify=stratify)
    return np.sort(train), np.sort(val), strategy


def _rows(X: pd.DataFrame, positions: np.ndarray) -> pd.DataFrame:
    """The rows at ``positions`` of a single-block float frame, with a fresh RangeIndex (one copy, the take)."""
    return pd.DataFrame(X.to_numpy()[positions], columns=X.columns)


def prepare_data(frame: TrainingFrame, model_type: str, split: SplitSpec, max_classes: int = 100) -> PreparedData:
    """Check the frame, encode the label and split rows into training and validation sets.

    Raises:
        InvalidRequest: No labelled rows, a key, timestamp or the label among the features, a
            non-numeric feature or regression label, or more than ``max_classes`` classes.
    """
    label = frame.label
    if label is None or label not in frame.df:
        raise InvalidRequest("the training frame has no label column; set data_source.target_column")
    warnings: list[str] = []
    df = frame.df
    has_label = df[label].notna().to_numpy()
    labelled = df if has_label.all() else df[has_label]  # no copy of every column when every row is labelled
    dropped = len(df) - len(labelled)
    if labelled.empty:
        raise InvalidRequest(
            f"the training set is empty: none of the {len(df)} entity rows has a {label!r} value at its timestamp; "
            "check the entity ids and event_timestamps against the source table"
        )
    if dropped:
        warnings.append(f"dropped {dropped} of {len(df)} entity rows with no {label!r} value")
    X = feature_matrix(labelled, frame.feature_columns, [*frame.join_keys, frame.timestamp_column, label])
    X.index = pd.RangeIndex(len(X))  # positions, without reset_index's copy of the matrix
    timestamps = labelled[frame.timestamp_column].reset_index(drop=True)
    keys = split_keys(labelled, list(frame.join_keys), frame.timestamp_column, split.seed)
    classes: list[Any] | None = None
    if model_type == "classification":
        raw = labelled[label].to_numpy()
        classes = sorted(pd.unique(raw).tolist())
        check_classes(label, classes, max_classes)
        y = encode_labels(raw, classes)
        if len(classes) < 2:
            warnings.append(f"the label {label!r} has a single class ({classes[0]!r}) in these rows; the model cannot separate classes")
    else:
        y_series = pd.to_numeric(labelled[label], errors="coerce")
        if y_series.isna().any():
            raise InvalidRequest(f"label {label!r} is not numeric; regression needs a numeric target")
        y = y_series.to_numpy(dtype="float64")

    if len(X) < MIN_SPLIT_ROWS:
        warnings.append(
            f"only {len(X)} labelled rows (< {MIN_SPLIT_ROWS}): trained on all of them with no validation set; "
            "the metrics are training metrics and say little about new data"
        )
        return PreparedData(
            X, y, None, None, list(frame.feature_columns), model_type, classes, "none", warnings, dict(frame.feature_dtypes)
        )
    train, val, strategy = _split(X, y, timestamps, keys, model_type, split, warnings)
    return PreparedData(
        X_train=_rows(X, train),
        y_train=y[train],
        X_val=_rows(X, val),
        y_val=y[val],
        feature_columns=list(frame.feature_columns),
        model_type=model_type,
        classes=classes,
        split=strategy,
        warnings=warnings,
        feature_dtypes=dict(frame.feature_dtypes),
    )
