"""The models one prediction replica holds: a small LRU of loaded versions, and the aliases it follows.

Each version is loaded once per replica in its native format (``scoring.model.load_native_model``:
a LightGBM/XGBoost booster or a scikit-learn estimator, no MLflow pyfunc wrapper on the hot path).
A request names a version number or an alias; an alias (and a request without a version, which
follows ``champion`` if it exists, else the latest version) is a *moving reference*: ``refresh``
reads each one from the registry, loads a new version first and only then points the reference at
it. A request that already holds the old ``LoadedModel`` finishes on it, so a swap fails nothing.

``LoadedModel`` is a plain class without ``__del__`` on purpose: Serve's multiplex cache calls
``__del__`` on evicted models, and LightGBM's booster then frees its handle twice and crashes the
replica. This cache only drops references and lets Python collect the booster once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from asgard_ray.config import Settings
from asgard_ray.errors import NotFound
from asgard_ray.scoring.model import ResolvedModel
from asgard_ray.scoring.predict import Prediction, predict_native
from asgard_ray.serving.schemas import DEFAULT_REF

__all__ = ["LoadedModel", "ModelCache", "resolve_version"]

log = logging.getLogger(__name__)

Key = tuple[str, str]


class LoadedModel:
    """One registered version, loaded natively, with the lineage that says how to feed it."""

    def __init__(self, resolved: ResolvedModel, flavor: str, native: Any) -> None:
        self.resolved = resolved
        self.flavor = flavor
        self.native = native
        self._booster = _lightgbm_booster(native)
        self._classify = resolved.model_type == "classification" or (resolved.model_type is None and hasattr(native, "predict_proba"))
        raw = getattr(native, "classes_", None) if self._booster is not None and self._booster is not native else None
        # labels as predict_native takes them: a scikit-learn wrapper's own classes_, else the recorded ones
        self._classes = [c.item() if hasattr(c, "item") else c for c in raw] if raw is not None else resolved.classes

    @property
    def version(self) -> str:
        """The registry version number, as text."""
        return self.resolved.version

    @property
    def feature_columns(self) -> list[str]:
        """Input columns in training order."""
        return self.resolved.feature_columns

    def predict(self, X: pd.DataFrame) -> Prediction:
        """Predict a frame of ``feature_columns`` (one thread: requests run side by side)."""
        return predict_native(
            self.native, X[self.feature_columns], model_type=self.resolved.model_type, classes=self.resolved.classes, num_threads=1
        )

    def predict_matrix(self, X: np.ndarray) -> Prediction:
        """Predict float64 rows already in ``feature_columns`` order; the same answer as ``predict``.

        A LightGBM model (a booster, or the booster inside ``LGBMClassifier``/``LGBMRegressor``) reads
        the matrix itself, on one thread: no DataFrame, no scikit-learn input checks, and none of the
        wrapper's OpenMP threads (its ``predict_proba`` uses every core; for one row their start and
        barrier cost more than the trees, and on a busy machine tens of milliseconds). Other models
        get the frame ``predict_native`` takes.
        """
        if self._booster is None:
            return self.predict(pd.DataFrame(X, columns=self.feature_columns))
        scores = np.asarray(self._booster.predict(X, num_threads=1))
        if not self._classify:
            return Prediction(prediction=scores)
        if scores.ndim == 1:  # binary: the positive class's probability, thresholded as predict_native does
            labels = self._classes or [0, 1]
            return Prediction(
                prediction=np.where(scores > 0.5, labels[1], labels[0]), proba=np.column_stack([1.0 - scores, scores]), classes=list(labels)
            )
        labels = self._classes or list(range(scores.shape[1]))
        return Prediction(prediction=np.asarray(labels)[np.argmax(scores, axis=1)], proba=scores, classes=list(labels))


def _lightgbm_booster(native: Any) -> Any:
    """The LightGBM booster of a native model (itself, or a fitted scikit-learn wrapper's), else ``None``."""
    if not type(native).__module__.startswith("lightgbm"):
        return None
    if type(native).__name__ == "Booster":
        return native
    try:
        return native.booster_
    except Exception:  # not a fitted LGBMModel: let predict_native handle it
        return None


def resolve_version(settings: Settings, name: str, ref: str) -> str:
    """The version a reference points at now: a number, ``latest``, an alias, or ``DEFAULT_REF``.

    Raises:
        NotFound: Unknown model, version or alias.
    """
    from asgard_ray.registry import resolve_model_version

    if ref == DEFAULT_REF:
        try:
            return str(resolve_model_version(settings, name, "champion")[0])
        except NotFound:
            ref = "latest"
    return str(resolve_model_version(settings, name, ref)[0])


def _load(settings: Settings, name: str, version: str) -> LoadedModel:
    from asgard_ray.scoring.model import load_native_model, resolve_model

    resolved = resolve_model(settings, name, version)
    flavor, native = load_native_model(settings, resolved)
    return LoadedModel(resolved, flavor, native)


class ModelCache:
    """Loaded versions (LRU, at most ``size``) and the moving references pointing into them.

    Args:
        settings: Where the registry is.
        size: Versions kept loaded; versions that a followed reference points at are never evicted.
        loader: ``(settings, name, version) -> LoadedModel`` (blocking; run in a thread).
        resolver: ``(settings, name, ref) -> version`` (blocking; run in a thread).
    """

    def __init__(
        self,
        settings: Settings,
        size: int = 4,
        loader: Callable[[Settings, str, str], LoadedModel] = _load,
        resolver: Callable[[Settings, str, str], str] = resolve_version,
    ) -> None:
        self.settings = settings
        self.size = max(1, size)
        self._loader = loader
        self._resolver = resolver
        self._models: OrderedDict[Key, LoadedModel] = OrderedDict()
        self._refs: dict[Key, str] = {}
        self._loading: dict[Key, asyncio.Future[LoadedModel]] = {}
        self.swaps: list[tuple[str, str, str, str]] = []
        """``(model, ref, old_version, new_version)`` of every swap this replica made (for logs and tests)."""

    @property
    def loaded(self) -> list[Key]:
        """``(model, version)`` pairs currently loaded, least recently used first."""
        return list(self._models)

    @property
    def references(self) -> dict[Key, str]:
        """Followed references ``(model, ref)`` and the version each points at."""
        return dict(self._refs)

    async def get(self, name: str, ref: str) -> LoadedModel:
        """The model a request for ``name``/``ref`` runs on (loading it on first use).

        Raises:
            NotFound: Unknown model, version or alias.
        """
        if ref.isdigit():
            return await self._version(name, ref)
        key = (name, ref)
        version = self._refs.get(key)
        if version is None:
            version = await asyncio.to_thread(self._resolver, self.settings, name, ref)
            model = await self._version(name, version)
            self._refs.setdefault(key, version)
            return model
        return await self._version(name, version)

    async def _version(self, name: str, version: str) -> LoadedModel:
        key = (name, version)
        model = self._models.get(key)
        if model is not None:
            self._models.move_to_end(key)
            return model
        pending = self._loading.get(key)
        if pending is None:  # one load per version, however many requests wait for it
            pending = asyncio.ensure_future(asyncio.to_thread(self._loader, self.settings, name, version))
            self._loading[key] = pending
            try:
                model = await pending
            finally:
                self._loading.pop(key, None)
            self._models[key] = model
            self._evict()
            log.info("loaded model %s v%s (%s); %d version(s) in this replica", name, version, model.flavor, len(self._models))
            return model
        return await asyncio.shield(pending)

    def _evict(self) -> None:
        pinned = {(name, v) for (name, _), v in self._refs.items()}
        for key in list(self._models):
            if len(self._models) <= self.size:
                break
            if key not in pinned:
                del self._models[key]  # dropped, never __del__-ed by hand
                log.info("evicted model %s v%s from this replica", *key)

    async def refresh(self) -> int:
        """Read every followed reference; load a moved one's new version, then switch. Returns swaps made."""
        swapped = 0
        for key, current in list(self._refs.items()):
            name, ref = key
            try:
                version = await asyncio.to_thread(self._resolver, self.settings, name, ref)
            except NotFound:
                log.warning("reference %s@%s is gone from the registry; next requests resolve it again", name, ref)
                self._refs.pop(key, None)
                continue
            except Exception as exc:  # the registry is unreachable: keep serving what is loaded
                log.warning("could not read %s@%s from the registry: %s", name, ref, exc)
                continue
            if version == current:
                continue
            try:
                await self._version(name, version)  # load first ...
            except Exception:
                log.exception("could not load %s v%s for %s; still serving v%s", name, version, ref, current)
                continue
            self._refs[key] = version  # ... then switch: requests holding the old model finish on it
            self.swaps.append((name, ref, current, version))
            swapped += 1
            self._evict()
            log.info("swapped %s@%s from v%s to v%s", name, ref, current, version)
        return swapped
