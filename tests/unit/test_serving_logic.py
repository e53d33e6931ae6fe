"""Pure logic of real-time serving: request shapes, row limit, inline frames, the model cache's swap rule."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from asgard_ray.config import Settings
from asgard_ray.errors import InvalidRequest, NotFound, PayloadTooLarge
from asgard_ray.scoring.model import ResolvedModel
from asgard_ray.serving.model_cache import LoadedModel, ModelCache
from asgard_ray.serving.predictor import check_rows, inline_frame, inline_matrix
from asgard_ray.serving.schemas import DEFAULT_REF, PredictRequest

COLS = ["a", "b"]


def test_model_version_is_normalised() -> None:
    base = {"model_name": "m", "instances": [{"a": 1}]}
    assert PredictRequest.model_validate(base).ref == DEFAULT_REF
    assert PredictRequest.model_validate({**base, "model_version": 3}).ref == "3"
    assert PredictRequest.model_validate({**base, "model_version": " 007 "}).ref == "7"
    assert PredictRequest.model_validate({**base, "model_version": "champion"}).ref == "champion"
    for bad in (0, True, "a/b", "../x"):
        with pytest.raises(ValidationError):
            PredictRequest.model_validate({**base, "model_version": bad})


@pytest.mark.parametrize("body", [
    {"model_name": "m"},  # neither source
    {"model_name": "m", "instances": [{"a": 1}], "entities": {"id": [1]}},  # both
    {"model_name": "m", "entities": {}},
    {"model_name": "m", "entities": {"id": [1, 2], "other": [1]}},
    {"model_name": "m", "instances": []},
    {"model_name": "../etc", "instances": [{"a": 1}]},
    {"model_name": "m", "instances": [{"a": 1}], "unexpected": 1},
    {"model_name": "m", "entities": {"id": [2**63]}},
])
def test_bad_shapes_are_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        PredictRequest.model_validate(body)


def test_row_limit_points_at_batch_scoring() -> None:
    req = PredictRequest.model_validate({"model_name": "m", "entities": {"id": list(range(11))}})
    check_rows(req, 11)
    with pytest.raises(PayloadTooLarge, match="/mlops/serve/batch"):
        check_rows(req, 10)


def test_inline_frame_checks_columns_and_types() -> None:
    frame = inline_frame([{"a": 1, "b": 2.5, "extra": "ignored"}, {"a": None, "b": 0}], COLS)
    assert list(frame.columns) == COLS and frame.dtypes.tolist() == [np.float64, np.float64]
    assert np.isnan(frame.loc[1, "a"])
    with pytest.raises(InvalidRequest, match="'b'"):
        inline_frame([{"a": 1}], COLS)
    for bad in ("3", True, [1], float("inf")):
        with pytest.raises(InvalidRequest, match="finite numbers"):
            inline_frame([{"a": bad, "b": 1}], COLS)


def _lightgbm_models() -> list[tuple[str, Any, str, list[Any] | None]]:
    """Small real LightGBM models: sklearn wrappers (binary, string labels, multi-class, regression) and raw boosters."""
    import lightgbm

    rng = np.random.default_rng(7)
    X = pd.DataFrame(rng.random((300, 2)) * [10, 5], columns=COLS)
    binary = (X.a > 5).astype(int)
    three = (X.a // 3.4).astype(int)
    params = {"n_estimators": 20, "min_child_samples": 5, "verbose": -1}
    raw = lightgbm.train({"objective": "binary", "verbose": -1, "min_data_in_leaf": 5}, lightgbm.Dataset(X, binary), num_boost_round=10)
    raw3 = lightgbm.train(
        {"objective": "multiclass", "num_class": 3, "verbose": -1, "min_data_in_leaf": 5}, lightgbm.Dataset(X, three), num_boost_round=10
    )
    return [
        ("binary", lightgbm.LGBMClassifier(**params).fit(X, binary), "classification", None),
        ("labels", lightgbm.LGBMClassifier(**params).fit(X, binary.map({0: "stay", 1: "churn"})), "classification", None),
        ("three", lightgbm.LGBMClassifier(**params).fit(X, three), "classification", None),
        ("regression", lightgbm.LGBMRegressor(**params).fit(X, X.a * 2 + X.b), "regression", None),
        ("booster", raw, "classification", [0, 1]),
        ("booster3", raw3, "classification", [0, 1, 2]),
    ]


@pytest.mark.parametrize("case", range(6))
def test_matrix_predict_equals_predict_native(case: int) -> None:
    """The real-time path (booster on a float64 matrix, one thread) answers exactly what the frame path does."""
    name, native, model_type, classes = _lightgbm_models()[case]
    resolved = ResolvedModel(
        name=name, version="1", model_uri=f"models:/{name}/1", feature_columns=COLS, model_type=model_type, classes=classes
    )
    loaded = LoadedModel(resolved, "lightgbm", native)
    rows = [{"a": 1.0, "b": 2.0}, {"a": 7.5, "b": None}, {"a": 4.0, "b": 0.5}]
    fast = loaded.predict_matrix(inline_matrix(rows, COLS))
    slow = loaded.predict(inline_frame(rows, COLS))
    assert fast.prediction.tolist() == slow.prediction.tolist()
    assert fast.classes == slow.classes
    if slow.proba is None:
        assert fast.proba is None
    else:
        np.testing.assert_allclose(fast.proba, slow.proba, rtol=1e-12)


def test_matrix_predict_falls_back_to_the_frame_for_other_models() -> None:
    loaded = _loaded("m", "4")
    assert loaded.predict_matrix(np.array([[1.0, 2.0], [3.0, 4.0]])).prediction.tolist() == [4.0, 4.0]


class _Model:
    def __init__(self, version: str) -> None:
        self.version = version

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.full(len(X), float(self.version))


def _loaded(name: str, version: str) -> LoadedModel:
    resolved = ResolvedModel(name=name, version=version, model_uri=f"models:/{name}/{version}", feature_columns=COLS,
                             model_type="regression")
    return LoadedModel(resolved, "sklearn", _Model(version))


class _Registry:
    """Aliases that a test moves; loads that a test can hold back."""

    def __init__(self) -> None:
        self.aliases = {"champion": "1"}
        self.loads: list[str] = []
        self.gate = threading.Event()
        self.gate.set()

    def resolve(self, settings: Settings, name: str, ref: str) -> str:
        if name != "m":
            raise NotFound(f"model {name!r} is not registered")
        if ref == DEFAULT_REF:
            ref = "champion"
        if ref.isdigit():
            return ref
        if ref not in self.aliases:
            raise NotFound(f"alias {ref!r} not found")
        return self.aliases[ref]

    def load(self, settings: Settings, name: str, version: str) -> LoadedModel:
        self.gate.wait(10)
        self.loads.append(version)
        return _loaded(name, version)


def test_swap_loads_first_then_switches_and_in_flight_keeps_the_old() -> None:
    reg = _Registry()
    cache = ModelCache(Settings(), size=2, loader=reg.load, resolver=reg.resolve)

    async def scenario() -> None:
        held = await cache.get("m", "champion")  # an in-flight request holds v1
        assert held.version == "1"
        reg.aliases["champion"] = "2"
        reg.gate.clear()  # v2's load is slow
        refresh = asyncio.ensure_future(cache.refresh())
        await asyncio.sleep(0.05)
        assert (await cache.get("m", "champion")).version == "1"  # still v1 while v2 loads
        reg.gate.set()
        assert await refresh == 1
        assert (await cache.get("m", "champion")).version == "2"
        assert held.predict(pd.DataFrame({"a": [1.0], "b": [2.0]})).prediction.tolist() == [1.0]
        assert cache.swaps == [("m", "champion", "1", "2")]
        assert await cache.refresh() == 0  # nothing moved: no reload

    asyncio.run(scenario())
    assert reg.loads == ["1", "2"]


def test_lru_keeps_followed_versions_and_loads_once() -> None:
    reg = _Registry()
    cache = ModelCache(Settings(), size=1, loader=reg.load, resolver=reg.resolve)

    async def scenario() -> None:
        await cache.get("m", DEFAULT_REF)  # follows champion -> v1 (pinned)
        results = await asyncio.gather(*(cache.get("m", "3") for _ in range(5)))
        assert {m.version for m in results} == {"3"}
        await cache.get("m", "4")
        assert ("m", "1") in cache.loaded and ("m", "3") not in cache.loaded
        with pytest.raises(NotFound):
            await cache.get("m", "no_alias")
        with pytest.raises(NotFound):
            await cache.get("other", "champion")

    asyncio.run(scenario())
    assert reg.loads == ["1", "3", "4"]  # five concurrent requests for v3 loaded it once


def test_a_deleted_alias_is_dropped_and_a_registry_outage_keeps_serving() -> None:
    reg = _Registry()
    cache = ModelCache(Settings(), size=2, loader=reg.load, resolver=reg.resolve)

    async def scenario() -> None:
        await cache.get("m", "champion")
        original = reg.resolve
        reg.resolve = lambda *a: (_ for _ in ()).throw(ConnectionError("registry down"))  # type: ignore[method-assign]
        cache._resolver = reg.resolve
        assert await cache.refresh() == 0 and cache.references == {("m", "champion"): "1"}
        cache._resolver = original
        del reg.aliases["champion"]
        assert await cache.refresh() == 0 and cache.references == {}

    asyncio.run(scenario())
