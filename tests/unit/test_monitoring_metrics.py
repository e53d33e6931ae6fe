"""Drift metrics against scipy, and the batch-partial aggregation against whole-data answers."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp as scipy_ks
from scipy.stats import wasserstein_distance
from sklearn.metrics import roc_auc_score

from asgard_ray.monitoring.aggregate import AggregateSpec, ColumnSpec, LabelSpec, combine, partial_stats
from asgard_ray.monitoring.compute import drift_metrics
from asgard_ray.monitoring.metrics import auc_from_histograms, js_distance, ks_2samp, psi, wasserstein
from asgard_ray.monitoring.profile import numeric_profile

RNG = np.random.default_rng(7)


@pytest.mark.parametrize("shift", [0.0, 0.1, 0.5, 2.0])
def test_ks_matches_scipy_asymptotic(shift: float) -> None:
    x, y = RNG.normal(0, 1, 3000), RNG.normal(shift, 1.2, 4500)
    d, p = ks_2samp(x, y)
    ref = scipy_ks(x, y, method="asymp")
    assert d == pytest.approx(ref.statistic, abs=1e-12)
    assert p == pytest.approx(ref.pvalue, rel=1e-6, abs=1e-300)


def test_ks_with_ties_matches_scipy() -> None:
    x, y = RNG.integers(0, 5, 2000).astype(float), RNG.integers(0, 6, 2500).astype(float)
    assert ks_2samp(x, y)[0] == pytest.approx(scipy_ks(x, y, method="asymp").statistic, abs=1e-12)


def test_wasserstein_matches_scipy() -> None:
    x, y = RNG.exponential(2.0, 1500), RNG.lognormal(0.5, 0.7, 2300)
    assert wasserstein(x, y) == pytest.approx(wasserstein_distance(x, y), rel=1e-9)
    assert wasserstein(x, x) == pytest.approx(0.0, abs=1e-12)


def test_js_distance_and_psi() -> None:
    p, q = np.array([10, 20, 30, 40, 0]), np.array([15, 15, 35, 30, 5])
    assert js_distance(p, q) == pytest.approx(jensenshannon(p / p.sum(), q / q.sum()), rel=1e-9)
    assert js_distance(p, p) == pytest.approx(0.0, abs=1e-9)
    ps, qs = np.clip(p / p.sum(), 1e-4, None), np.clip(q / q.sum(), 1e-4, None)
    assert psi(p, q) == pytest.approx(float(np.sum((qs - ps) * np.log(qs / ps))))
    assert psi(p, p) == pytest.approx(0.0, abs=1e-12)


def test_auc_from_histograms_matches_sklearn() -> None:
    y = RNG.random(20000) < 0.3
    score = np.clip(RNG.normal(0.35 + 0.3 * y, 0.2), 0, 1)
    bins = np.minimum((score * 1000).astype(int), 999)
    auc = auc_from_histograms(np.bincount(bins[y], minlength=1000), np.bincount(bins[~y], minlength=1000))
    assert auc == pytest.approx(roc_auc_score(y, score), abs=1e-3)  # 1,000 bins: ties within a bin count half


def _batches(df: pd.DataFrame, n: int) -> list[pd.DataFrame]:
    return [df.iloc[i::n].reset_index(drop=True) for i in range(n)]


def test_partials_combine_to_whole_data_answers() -> None:
    """Exact counts; KS and Wasserstein on the 5,000/20,000 samples within the documented tolerance."""
    ref = pd.DataFrame({"a": RNG.normal(10, 2, 20000), "b": RNG.gamma(2, 2, 20000)})
    cur = pd.DataFrame({"a": RNG.normal(10.6, 2, 120000), "b": RNG.gamma(2, 2, 120000)})
    cur.loc[cur.sample(frac=0.02, random_state=1).index, "a"] = np.nan
    cur.loc[:99, "b"] = 1e6  # out of the training range
    profiles = {c: numeric_profile(ref[c]) for c in ref}
    spec = AggregateSpec(columns=tuple(ColumnSpec(c, tuple(p["bin_edges"][1:-1]), p["quantiles"]["0"], p["quantiles"]["1"])
                                       for c, p in profiles.items()), sample_size=20000)
    total = combine([partial_stats(b, spec)["partial"][0] for b in _batches(cur, 7)], spec)
    assert total["n"] == len(cur)
    a = total["columns"]["a"]
    assert a["missing"] == int(cur["a"].isna().sum())
    edges = np.array([-np.inf, *profiles["a"]["bin_edges"][1:-1], np.inf])
    assert a["counts"].tolist() == np.histogram(cur["a"].dropna(), bins=edges)[0].tolist()
    assert total["columns"]["b"]["out_of_range"] >= 100
    assert a["sum"] == pytest.approx(cur["a"].sum())
    for col in ("a", "b"):
        sample = total["sample"][col]
        assert 19000 < sample.size <= 20000
        got = drift_metrics(profiles[col], total["columns"][col], sample)
        full_ks = scipy_ks(ref[col], cur[col].dropna()).statistic
        assert got["ks_statistic"] == pytest.approx(full_ks, abs=0.03)  # DKW bound ~0.021 at 95% for 5k/20k samples
        full_w = wasserstein_distance(ref[col], cur[col].dropna()) / ref[col].std(ddof=0)
        if col == "a":
            assert got["wasserstein_norm"] == pytest.approx(full_w, abs=0.05)
        assert got["psi"] >= 0 and 0 <= got["js_distance"] <= np.sqrt(np.log(2))
    assert drift_metrics(profiles["a"], total["columns"]["a"], total["sample"]["a"])["ks_pvalue"] < 0.05


def test_performance_partials_with_point_in_time_labels() -> None:
    ts = pd.Timestamp("2025-10-01", tz="UTC")
    labels = pd.DataFrame({"customer_id": [1, 2, 3, 1], "event_timestamp": [ts, ts, ts, ts + pd.Timedelta(days=40)],
                           "churned": [1, 0, 1, 0]})
    scored = pd.DataFrame({"customer_id": [1, 2, 3, 4], "event_timestamp": [ts + pd.Timedelta(days=1)] * 4,
                           "prediction": [1, 0, 0, 1], "prediction_proba": [0.9, 0.2, 0.4, 0.8], "x": [1.0, 2, 3, 4]})
    spec = AggregateSpec(columns=(ColumnSpec("x", (2.5,), 0.0, 10.0),), sample_size=10,
                         label=LabelSpec(labels=labels, join_keys=("customer_id",), label_column="churned",
                                         task="classification", score_column="prediction_proba"))
    part = pickle.loads(partial_stats(scored, spec)["partial"][0])["performance"]
    # customer 1 takes the label as of day 1 (churned=1), not the later one; customer 4 has none
    assert part["labeled"] == 3 and part["correct"] == 2
    assert (part["tp"], part["fp"], part["fn"], part["tn"]) == (1, 0, 1, 1)
