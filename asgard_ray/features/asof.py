"""Point-in-time (as-of) feature lookup, vectorised with numpy, for large entity sets on Ray Data.

Feast's offline store (``asgard_ray.features.build_training_frame``) is what inline ``entities_df``
requests use. For ``entities_source`` (millions of entity rows on S3) the entity rows stream through
Ray Data and each batch looks its features up in an :class:`AsOfIndex` built once from the gold
table and shared through the object store (zero-copy numpy arrays), so no single process ever
holds the entity rows and the join costs ``O(batch · log table)`` per batch.

Semantics match Feast's: for every entity row, each feature takes the value of the latest source
row with the same join key(s) whose timestamp is at or before the entity row's timestamp (and, with
a TTL, not older than ``ttl``); rows with no such source row get nulls. On equal timestamps the
row stored last wins. The limit is the index itself: the projected gold columns (keys, timestamp,
features) must fit in one worker's memory, which holds for tens of millions of rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["AsOfIndex", "asof_lookup", "build_asof_index", "timestamps_ns"]


def timestamps_ns(values: pd.Series | pd.Index | np.ndarray) -> np.ndarray:
    """Convert timestamps (naive = UTC) to int64 nanoseconds since the epoch."""
    idx = pd.DatetimeIndex(pd.to_datetime(values, utc=True))
    return idx.as_unit("ns").asi8


def _key_index(frame: pd.DataFrame, keys: list[str]) -> tuple[np.ndarray, pd.Index]:
    if len(keys) == 1:
        codes, uniques = pd.factorize(frame[keys[0]], sort=False)
        return np.asarray(codes, dtype=np.int64), pd.Index(uniques)
    mi = pd.MultiIndex.from_frame(frame[keys])
    codes, uniques = pd.factorize(mi, sort=False)
    return np.asarray(codes, dtype=np.int64), uniques


@dataclass
class AsOfIndex:
    """Feature rows sorted by (key, timestamp), ready for vectorised as-of lookups."""

    keys: list[str]
    feature_columns: list[str]
    key_index: pd.Index
    uniq_ts: np.ndarray
    stride: int
    composite: np.ndarray
    ts: np.ndarray
    values: dict[str, np.ndarray] = field(default_factory=dict)
    ttl_ns: int | None = None

    @property
    def rows(self) -> int:
        """Source rows in the index."""
        return int(self.composite.size)


def build_asof_index(
    table: pd.DataFrame,
    keys: list[str],
    timestamp_column: str,
    feature_columns: list[str],
    ttl_seconds: float | None = None,
) -> AsOfIndex:
    """Sort a feature table by (key, timestamp) for :func:`asof_lookup`.

    Args:
        table: Source rows with the join keys, the timestamp column and the features.
        keys: Join key columns.
        timestamp_column: Event-time column of the source.
        feature_columns: Feature columns to serve.
        ttl_seconds: Maximum feature age; ``None`` or 0 means forever.
    """
    codes, key_index = _key_index(table, keys)
    ts = timestamps_ns(table[timestamp_column])
    uniq_ts = np.unique(ts)
    rank = np.searchsorted(uniq_ts, ts, side="left").astype(np.int64)
    stride = int(uniq_ts.size) + 1
    composite = codes * stride + rank
    order = np.argsort(composite, kind="stable")
    return AsOfIndex(
        keys=list(keys),
        feature_columns=list(feature_columns),
        key_index=key_index,
        uniq_ts=uniq_ts,
        stride=stride,
        composite=composite[order],
        ts=ts[order],
        values={c: table[c].to_numpy()[order] for c in feature_columns},
        ttl_ns=int(ttl_seconds * 1e9) if ttl_seconds else None,
    )


def asof_lookup(index: AsOfIndex, entities: pd.DataFrame, timestamp_column: str = "event_timestamp") -> pd.DataFrame:
    """Return the index's features as of each entity row (same row order; nulls where none).

    Integer and boolean features that get a null for some row become float64 (NaN), as Feast does.
    """
    n = len(entities)
    if len(index.keys) == 1:
        probe: pd.Index = pd.Index(entities[index.keys[0]].to_numpy())
    else:
        probe = pd.MultiIndex.from_frame(entities[index.keys])
    group = np.asarray(index.key_index.get_indexer(probe), dtype=np.int64)
    e_ts = timestamps_ns(entities[timestamp_column])
    rank = np.searchsorted(index.uniq_ts, e_ts, side="right").astype(np.int64) - 1
    target = group * index.stride + rank
    pos = np.searchsorted(index.composite, target, side="right") - 1
    safe = np.clip(pos, 0, max(index.rows - 1, 0))
    valid = (group >= 0) & (rank >= 0) & (pos >= 0) & (index.rows > 0)
    if index.rows:
        valid &= (index.composite[safe] // index.stride) == group
        if index.ttl_ns is not None:
            valid &= index.ts[safe] >= e_ts - index.ttl_ns
    out: dict[str, np.ndarray] = {}
    for col in index.feature_columns:
        src = index.values[col]
        if not index.rows:
            out[col] = np.full(n, np.nan)
            continue
        vals = src[safe]
        if not valid.all():
            if vals.dtype.kind in "iub":
                vals = vals.astype(np.float64)
            elif vals.dtype.kind == "O":
                vals = vals.copy()
            missing = np.nan if vals.dtype.kind == "f" else np.array(None, dtype=object)
            vals = np.where(valid, vals, missing)
        out[col] = vals
    return pd.DataFrame(out, index=entities.index)
