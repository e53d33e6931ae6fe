"""Distributed aggregation of scored data: per-batch partial statistics on Ray Data, combined on the driver.

Each batch yields one small partial: per column the row, missing and out-of-range counts, exact counts
in the reference bins, sums for mean and std, a bottom-k random sample of rows (uniform without
replacement; merging bottom-k samples by their random keys stays uniform), and, when labels are
joined, confusion counts and score histograms (classification) or error sums (regression). Only
partials travel to the driver, never the rows.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from asgard_ray.monitoring.metrics import AUC_BINS

__all__ = ["AggregateSpec", "ColumnSpec", "LabelSpec", "column_spec", "combine", "file_partials", "partial_stats"]


@dataclass(frozen=True)
class ColumnSpec:
    """A numeric column to profile: reference bin edges (inner, ascending) and training range."""

    name: str
    inner_edges: tuple[float, ...]
    lo: float | None
    hi: float | None


def column_spec(name: str, prof: dict[str, Any]) -> ColumnSpec:
    """The aggregation spec of a column from its reference profile (bin edges and training range)."""
    edges = prof.get("bin_edges") or []
    quantiles = prof.get("quantiles") or {}
    return ColumnSpec(name, tuple(float(e) for e in edges[1:-1]), quantiles.get("0"), quantiles.get("1"))


@dataclass(frozen=True)
class LabelSpec:
    """How to join labels and score performance."""

    labels: pd.DataFrame
    join_keys: tuple[str, ...]
    label_column: str
    task: str  # classification | regression
    prediction_column: str = "prediction"
    score_column: str | None = None
    positive: Any = 1
    timestamp_column: str | None = "event_timestamp"


@dataclass(frozen=True)
class AggregateSpec:
    """Everything a batch needs to compute its partial."""

    columns: tuple[ColumnSpec, ...]
    sample_size: int = 20_000
    label: LabelSpec | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _numeric(series: pd.Series) -> np.ndarray:
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def _join_labels(batch: pd.DataFrame, spec: LabelSpec) -> pd.DataFrame:
    keys = list(spec.join_keys)
    labels = spec.labels
    if spec.timestamp_column and spec.timestamp_column in batch.columns and spec.timestamp_column in labels.columns:
        ts = spec.timestamp_column
        left = batch.assign(**{ts: pd.to_datetime(batch[ts], utc=True).astype("datetime64[ns, UTC]")})
        left = left.assign(_row=np.arange(len(left))).sort_values(ts)
        right = labels.assign(**{ts: pd.to_datetime(labels[ts], utc=True).astype("datetime64[ns, UTC]")}).sort_values(ts)
        for k in keys:
            right[k] = right[k].astype(left[k].dtype)
        joined = pd.merge_asof(left, right[[*keys, ts, spec.label_column]], on=ts, by=keys, direction="backward")
        return joined.sort_values("_row")
    latest = (
        labels.sort_values(spec.timestamp_column or keys[0]).drop_duplicates(keys, keep="last")
        if spec.timestamp_column in labels.columns
        else labels
    )
    return batch.merge(latest[[*keys, spec.label_column]], on=keys, how="left")


def _performance(batch: pd.DataFrame, spec: LabelSpec) -> dict[str, Any]:
    joined = _join_labels(batch, spec)
    label = joined[spec.label_column]
    has = label.notna().to_numpy()
    out: dict[str, Any] = {"rows": len(joined), "labeled": int(has.sum())}
    if not has.any():
        return out
    pred = joined[spec.prediction_column].to_numpy()[has]
    y = label.to_numpy()[has]
    if spec.task == "regression":
        err = _numeric(pd.Series(pred)) - _numeric(pd.Series(y))
        out.update(abs_err=float(np.nansum(np.abs(err))), sq_err=float(np.nansum(err**2)))
        return out
    pos_true = y == spec.positive
    pos_pred = pred == spec.positive
    out.update(
        correct=int(np.sum(pred == y)),
        tp=int(np.sum(pos_true & pos_pred)),
        fp=int(np.sum(~pos_true & pos_pred)),
        fn=int(np.sum(pos_true & ~pos_pred)),
        tn=int(np.sum(~pos_true & ~pos_pred)),
    )
    if spec.score_column and spec.score_column in joined.columns:
        score = np.clip(_numeric(joined[spec.score_column])[has], 0.0, 1.0)
        bins = np.minimum((score * AUC_BINS).astype(int), AUC_BINS - 1)
        out["pos_hist"] = np.bincount(bins[pos_true], minlength=AUC_BINS)
        out["neg_hist"] = np.bincount(bins[~pos_true], minlength=AUC_BINS)
    return out


def partial_stats(batch: pd.DataFrame, spec: AggregateSpec) -> dict[str, np.ndarray]:
    """Summarise one batch (a Ray Data ``map_batches`` function); returns one row holding a pickled partial."""
    n = len(batch)
    part: dict[str, Any] = {"n": n, "columns": {}}
    values = np.full((n, len(spec.columns)), np.nan)
    for j, col in enumerate(spec.columns):
        if col.name not in batch.columns:
            part["columns"][col.name] = None
            continue
        arr = _numeric(batch[col.name])
        values[:, j] = arr
        finite = arr[np.isfinite(arr)]
        bins = np.searchsorted(np.asarray(col.inner_edges), finite, side="right")
        oor = 0
        if col.lo is not None and col.hi is not None:
            oor = int(np.sum((finite < col.lo) | (finite > col.hi)))
        part["columns"][col.name] = {
            "missing": int(n - finite.size),
            "counts": np.bincount(bins, minlength=len(col.inner_edges) + 1),
            "out_of_range": oor,
            "sum": float(finite.sum()),
            "sumsq": float(np.square(finite).sum()),
            "min": float(finite.min()) if finite.size else np.inf,
            "max": float(finite.max()) if finite.size else -np.inf,
        }
    keys = np.random.default_rng().random(n)
    k = min(spec.sample_size, n)
    pick = np.argpartition(keys, k - 1)[:k] if 0 < k < n else np.arange(n)
    part["sample_keys"] = keys[pick]
    part["sample"] = values[pick]
    if spec.label is not None:
        part["performance"] = _performance(batch, spec.label)
    return {"partial": np.array([pickle.dumps(part, protocol=5)], dtype=object)}


def file_partials(
    batch: dict[str, np.ndarray], settings: Any, spec: AggregateSpec, columns: list[str], chunk_rows: int = 262_144
) -> dict[str, np.ndarray]:
    """Read the Parquet files named in a batch of paths chunk by chunk and summarise each file as one partial.

    A Ray Data ``map_batches`` function over the manifest's file list: the manifest is the output's
    source of truth, so no listing is needed, and memory stays bounded by ``chunk_rows``.
    """
    import pyarrow.parquet as pq

    from asgard_ray.storage import resolve

    out = []
    for uri in batch["path"]:
        fs, path = resolve(settings, str(uri))
        with fs.open_input_file(path) as f:
            parquet = pq.ParquetFile(f)
            names = [c for c in columns if c in parquet.schema_arrow.names]
            parts = [
                partial_stats(chunk.to_pandas(), spec)["partial"][0] for chunk in parquet.iter_batches(batch_size=chunk_rows, columns=names)
            ]
        out.append(pickle.dumps(combine(parts, spec, keep_keys=True), protocol=5))
    return {"partial": np.array(out, dtype=object)}


def _add(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    if a is None or b is None:
        return a or b
    out = dict(a)
    for key, value in b.items():
        if key == "min":
            out[key] = min(a[key], value)
        elif key == "max":
            out[key] = max(a[key], value)
        elif key in out:
            out[key] = out[key] + value
        else:
            out[key] = value
    return out


def combine(partials: list[bytes], spec: AggregateSpec, keep_keys: bool = False) -> dict[str, Any]:
    """Merge the partials: summed counts, the global bottom-k sample, summed performance counts.

    With ``keep_keys`` the result is itself a partial (sample keys kept), to be combined again.
    """
    total: dict[str, Any] = {"n": 0, "columns": {c.name: None for c in spec.columns}, "performance": None}
    keys: list[np.ndarray] = []
    samples: list[np.ndarray] = []
    for blob in partials:
        part = pickle.loads(blob)  # noqa: S301 - produced by partial_stats in this job
        total["n"] += part["n"]
        for name, stats in part["columns"].items():
            total["columns"][name] = _add(total["columns"][name], stats)
        keys.append(part["sample_keys"])
        samples.append(part["sample"])
        if "performance" in part:
            total["performance"] = _add(total["performance"], part["performance"])
    all_keys = np.concatenate(keys) if keys else np.empty(0)
    all_samples = np.concatenate(samples) if samples else np.empty((0, len(spec.columns)))
    if all_keys.size > spec.sample_size:
        pick = np.argpartition(all_keys, spec.sample_size - 1)[: spec.sample_size]
        all_samples, all_keys = all_samples[pick], all_keys[pick]
    if keep_keys:
        if total["performance"] is None:
            del total["performance"]
        return {**total, "sample_keys": all_keys, "sample": all_samples}
    total["sample"] = {c.name: all_samples[:, j][np.isfinite(all_samples[:, j])] for j, c in enumerate(spec.columns)}
    return total
