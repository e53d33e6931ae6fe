"""Which rows validate: one rule for both modes, decided by each entity row alone.

A seeded hash of the entity row (its join keys and event timestamp) gives every row a number in
[0, 1); rows below ``validation_fraction`` validate. The side of a row depends only on the row and
the seed, not on the order or the block the row arrives in, so the in-memory mode (one frame) and
the data-parallel mode (Ray Data blocks) split the same request the same way, and a re-run with the
same seed validates on the same rows. The in-memory mode also offers an exact stratified split
(``strategy: stratified``); ``time`` validates on the latest rows in both modes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["HASH_STRATEGIES", "split_keys"]

HASH_STRATEGIES = frozenset({"random", "hash"})
"""Strategies that split by the hash of the entity row."""


def split_keys(frame: pd.DataFrame, keys: list[str], timestamp: str, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per row, from a seeded hash of its join keys and timestamp.

    Columns are normalised before hashing (integers as int64, timestamps as UTC nanoseconds, the rest
    as text), so the same entity row hashes the same whatever the dtype its block carries.
    """
    normal = {}
    for col in [*keys, timestamp]:
        series = frame[col]
        if col == timestamp:
            normal[col] = pd.to_datetime(series, utc=True).dt.as_unit("ns").astype("int64").to_numpy()
        elif pd.api.types.is_integer_dtype(series.dtype):
            normal[col] = series.to_numpy(dtype="int64")
        else:
            normal[col] = series.astype(str).to_numpy(dtype=object)
    hashed = pd.util.hash_pandas_object(pd.DataFrame(normal), index=False, hash_key=f"asgard{seed:010d}"[:16]).to_numpy(dtype=np.uint64)
    return (hashed >> np.uint64(11)).astype(np.float64) / float(1 << 53)
