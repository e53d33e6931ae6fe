"""Reference profiles: a compact, JSON-serialisable summary of a numeric distribution.

Training logs one per model (``reference_profile.json``: every feature, the validation predictions,
the label); monitoring compares scored data against it. Each column keeps its quantiles, a
histogram over decile bin edges (for PSI and Jensen-Shannon), summary statistics, the missing rate
and a fixed-size random sample (for the KS test and the Wasserstein distance).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["EDGE_SAMPLE_ROWS", "PROFILE_VERSION", "QUANTILES", "build_reference_profile", "numeric_profile"]

PROFILE_VERSION = 1
QUANTILES = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)


EDGE_SAMPLE_ROWS = 100_000
"""Above this many values, quantiles and bin edges come from a seeded sample of this size (a sort of every
value cost a training job ~1 s at 1M rows); counts, missing values, mean, std, min and max stay exact."""


def numeric_profile(values: Any, n_bins: int = 10, sample_size: int = 5000, seed: int = 0) -> dict[str, Any]:
    """Summarise one numeric column.

    Bin edges are the reference's deciles (deduplicated) with open ends, so every future value
    falls in some bin; ``counts`` are the reference's counts in those bins, over every value.
    """
    arr = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype="float64")
    n = int(arr.size)
    finite = arr[np.isfinite(arr)]
    missing = n - int(finite.size)
    out: dict[str, Any] = {"n": n, "missing": missing, "missing_rate": (missing / n) if n else 0.0}
    if finite.size == 0:
        out.update(mean=None, std=None, min=None, max=None, quantiles={}, bin_edges=[], counts=[], sample=[])
        return out
    rng = np.random.default_rng(seed)
    ranked = finite if finite.size <= EDGE_SAMPLE_ROWS else rng.choice(finite, EDGE_SAMPLE_ROWS, replace=False)
    qs = np.quantile(ranked, QUANTILES)
    qs[0], qs[-1] = finite.min(), finite.max()  # the ends exactly
    inner = np.unique(np.quantile(ranked, np.linspace(0, 1, n_bins + 1)[1:-1]))
    edges = np.concatenate(([-np.inf], inner, [np.inf]))
    counts = np.bincount(np.searchsorted(inner, finite, side="right"), minlength=len(inner) + 1)
    sample = finite if finite.size <= sample_size else rng.choice(finite, sample_size, replace=False)
    out.update(
        mean=float(finite.mean()),
        std=float(finite.std()),
        min=float(finite.min()),
        max=float(finite.max()),
        quantiles={f"{q:g}": float(v) for q, v in zip(QUANTILES, qs, strict=True)},
        bin_edges=[None if not np.isfinite(e) else float(e) for e in edges],
        counts=[int(c) for c in counts],
        sample=[float(v) for v in np.sort(sample)],
    )
    return out


def build_reference_profile(
    features: pd.DataFrame,
    feature_columns: list[str],
    predictions: Any | None = None,
    label: Any | None = None,
) -> dict[str, Any]:
    """Profile the training features (and validation predictions and labels, when given)."""
    profile: dict[str, Any] = {
        "version": PROFILE_VERSION,
        "n_rows": len(features),
        "feature_columns": list(feature_columns),
        "dtypes": {c: str(features[c].dtype) for c in feature_columns},
        "features": {c: numeric_profile(features[c]) for c in feature_columns},
    }
    if predictions is not None:
        profile["prediction"] = numeric_profile(predictions)
    if label is not None:
        profile["label"] = numeric_profile(label)
    return profile
