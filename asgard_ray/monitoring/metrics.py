"""Drift and performance metrics from counts (histograms) and fixed-size samples.

PSI, Jensen-Shannon and ROC AUC are computed here in numpy because they work on partial counts
summed across Ray batches (scipy wants whole samples); KS and Wasserstein are scipy's own.
PSI and Jensen-Shannon use exact bin counts over the reference profile's decile edges (the current
counts are summed over every row on Ray). The KS test and the Wasserstein distance use the
reference profile's sample (up to 5,000 values) and a uniform sample of the current data (default
20,000 rows); with samples of n and m values the KS statistic is within about
``1.36 * sqrt((n + m) / (n * m))`` (~0.02 for 5,000/20,000) of the full-data statistic at 95%
(the DKW bound), and the p-value is that of the samples. ROC AUC is computed from score histograms
of 1,000 bins per class (error below 1/1000 of the pairs that share a bin).
Unit tests compare the count-based functions with scipy (``jensenshannon``) and sklearn (``roc_auc_score``).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "AUC_BINS",
    "auc_from_histograms",
    "js_distance",
    "ks_2samp",
    "psi",
    "shares",
    "wasserstein",
]

AUC_BINS = 1000
_EPS = 1e-4


def shares(counts: np.ndarray) -> np.ndarray:
    """Counts as proportions (all zeros stay zeros)."""
    counts = np.asarray(counts, dtype="float64")
    total = counts.sum()
    return counts / total if total > 0 else counts


def psi(ref_counts: np.ndarray, cur_counts: np.ndarray, eps: float = _EPS) -> float:
    """Population stability index over common bins; empty bins are floored at ``eps`` share."""
    p = np.clip(shares(ref_counts), eps, None)
    q = np.clip(shares(cur_counts), eps, None)
    return float(np.sum((q - p) * np.log(q / p)))


def js_distance(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """Jensen-Shannon distance (natural log, as scipy's default; in [0, sqrt(ln 2)])."""
    p, q = shares(ref_counts), shares(cur_counts)
    m = 0.5 * (p + q)

    def kl(a: np.ndarray, b: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log(a[mask] / b[mask])))

    value = 0.5 * kl(p, m) + 0.5 * kl(q, m)
    return math.sqrt(max(value, 0.0))


def ks_2samp(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and asymptotic two-sided p-value (scipy's ``ks_2samp``).

    NaN for both when either sample is empty (scipy raises there).
    """
    from scipy import stats

    x, y = np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64")
    if min(x.size, y.size) == 0:
        return float("nan"), float("nan")
    result = stats.ks_2samp(x, y, method="asymp")
    return float(result.statistic), float(np.clip(result.pvalue, 0.0, 1.0))


def wasserstein(x: np.ndarray, y: np.ndarray) -> float:
    """First Wasserstein (earth mover's) distance between two samples (scipy's ``wasserstein_distance``)."""
    from scipy import stats

    x, y = np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64")
    if x.size == 0 or y.size == 0:
        return float("nan")
    return float(stats.wasserstein_distance(x, y))


def auc_from_histograms(pos: np.ndarray, neg: np.ndarray) -> float:
    """ROC AUC from score histograms of positives and negatives over the same ascending bins."""
    pos, neg = np.asarray(pos, dtype="float64"), np.asarray(neg, dtype="float64")
    n_pos, n_neg = pos.sum(), neg.sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    neg_below = np.concatenate([[0.0], np.cumsum(neg)[:-1]])
    return float(np.sum(pos * (neg_below + 0.5 * neg)) / (n_pos * n_neg))
