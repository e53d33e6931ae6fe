"""The vectorised as-of lookup against pandas.merge_asof, TTLs, unknown keys and multi-key joins."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from asgard_ray.features.asof import asof_lookup, build_asof_index, timestamps_ns


def _gold(n_keys: int = 50, snapshots: int = 4, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(snapshots):
        frames.append(pd.DataFrame({
            "cid": np.arange(1, n_keys + 1, dtype="int64"),
            "ts": pd.Timestamp("2025-07-01", tz="UTC") + pd.Timedelta(days=30 * i),
            "a": rng.integers(0, 100, n_keys).astype("int64"),
            "b": rng.normal(size=n_keys),
        }))
    df = pd.concat(frames, ignore_index=True)
    df["ts"] = df["ts"].astype("datetime64[us, UTC]")
    return df


def test_matches_merge_asof_and_keeps_row_order() -> None:
    gold = _gold()
    rng = np.random.default_rng(1)
    ents = pd.DataFrame({
        "cid": rng.integers(1, 60, 500).astype("int64"),  # some unknown ids
        "event_timestamp": (pd.Timestamp("2025-06-15", tz="UTC") + pd.to_timedelta(rng.integers(0, 150 * 86400, 500), unit="s")).astype("datetime64[us, UTC]"),
    })
    got = asof_lookup(build_asof_index(gold, ["cid"], "ts", ["a", "b"]), ents)
    ref = pd.merge_asof(
        ents.reset_index().sort_values("event_timestamp"),
        gold.rename(columns={"ts": "event_timestamp"}).sort_values("event_timestamp"),
        on="event_timestamp", by="cid", direction="backward",
    ).sort_values("index").set_index("index")
    np.testing.assert_allclose(got["a"].to_numpy(dtype=float), ref["a"].to_numpy(dtype=float), equal_nan=True)
    np.testing.assert_allclose(got["b"].to_numpy(), ref["b"].to_numpy(), equal_nan=True)
    assert got["a"].isna().sum() > 0  # unknown ids and rows before the first snapshot


def test_exact_timestamp_is_included_and_ints_stay_ints_without_nulls() -> None:
    gold = _gold(n_keys=3)
    ents = pd.DataFrame({"cid": [1, 2, 3], "event_timestamp": pd.to_datetime(["2025-07-31"] * 3, utc=True)})
    got = asof_lookup(build_asof_index(gold, ["cid"], "ts", ["a"]), ents)
    expected = gold[gold["ts"] == pd.Timestamp("2025-07-31", tz="UTC")].set_index("cid")["a"]
    assert got["a"].tolist() == expected.loc[[1, 2, 3]].tolist()
    assert got["a"].dtype == np.int64


def test_ttl_hides_stale_values() -> None:
    gold = _gold(n_keys=2, snapshots=1)  # one snapshot at 2025-07-01
    ents = pd.DataFrame({"cid": [1, 1], "event_timestamp": pd.to_datetime(["2025-07-02", "2025-09-01"], utc=True)})
    got = asof_lookup(build_asof_index(gold, ["cid"], "ts", ["b"], ttl_seconds=7 * 86400), ents)
    assert not np.isnan(got["b"].iloc[0]) and np.isnan(got["b"].iloc[1])


def test_multi_key_and_string_keys() -> None:
    gold = pd.DataFrame({
        "shop": ["x", "x", "y"], "item": [1, 1, 1],
        "ts": pd.to_datetime(["2025-01-01", "2025-02-01", "2025-01-15"], utc=True), "v": [1.0, 2.0, 3.0],
    })
    ents = pd.DataFrame({"shop": ["x", "y", "x", "z"], "item": [1, 1, 1, 1],
                         "event_timestamp": pd.to_datetime(["2025-01-20", "2025-03-01", "2025-03-01", "2025-03-01"], utc=True)})
    got = asof_lookup(build_asof_index(gold, ["shop", "item"], "ts", ["v"]), ents)
    assert got["v"].tolist()[:3] == [1.0, 3.0, 2.0] and np.isnan(got["v"].iloc[3])


def test_naive_timestamps_are_utc() -> None:
    assert timestamps_ns(pd.Series(pd.to_datetime(["2025-01-01"])))[0] == timestamps_ns(pd.Series(pd.to_datetime(["2025-01-01"], utc=True)))[0]


def test_empty_index_gives_nulls() -> None:
    gold = _gold().iloc[:0]
    ents = pd.DataFrame({"cid": [1], "event_timestamp": pd.to_datetime(["2025-08-01"], utc=True)})
    got = asof_lookup(build_asof_index(gold, ["cid"], "ts", ["a"]), ents)
    assert got["a"].isna().all()


@pytest.mark.parametrize("n", [1, 1000])
def test_output_aligns_to_entity_index(n: int) -> None:
    gold = _gold()
    ents = pd.DataFrame({"cid": np.ones(n, dtype="int64"), "event_timestamp": pd.Timestamp("2025-12-01", tz="UTC")}, index=np.arange(n) + 10)
    got = asof_lookup(build_asof_index(gold, ["cid"], "ts", ["a"]), ents)
    assert list(got.index) == list(ents.index)
