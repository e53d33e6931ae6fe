"""Online feature lookups for real-time predictions: entity ids -> feature values from Feast's online store.

The store is Feast's online store as ``features.store`` configures it (SQLite under the Feast repo
in the embedded stack, Redis in production). Feast keeps its registry cached (``cache_ttl_seconds:
0`` never expires), so a lookup costs one online-store read; ``refresh`` re-reads the registry in the
background, so feature views registered later become visible without a replica restart. An id that
the online store does not hold comes back with every feature ``None``: it is reported missing, never
filled in.
"""

from __future__ import annotations

import logging
from typing import Any

from asgard_ray.config import Settings
from asgard_ray.errors import InvalidRequest, NotFound

__all__ = ["OnlineFeatures"]

log = logging.getLogger(__name__)


class OnlineFeatures:
    """Reads feature values for entity ids from the online store (blocking; call it in a thread)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._views: dict[str, tuple[list[str], list[str], dict[str, str]]] = {}

    @property
    def store(self) -> Any:
        """The process's Feast store."""
        from asgard_ray.features.store import feature_store

        return feature_store(self.settings)

    def refresh(self) -> None:
        """Re-read the registry (new or changed feature views) and forget the views' cached shapes."""
        self.store.refresh_registry()
        self._views.clear()

    def _view(self, name: str) -> tuple[list[str], list[str], dict[str, str]]:
        """``(join_keys, feature names, join key -> value type)`` of a view, cached until ``refresh``."""
        if name not in self._views:
            from feast.errors import FeatureViewNotFoundException

            store = self.store
            try:
                fv = store.get_feature_view(name, allow_registry_cache=True)
            except FeatureViewNotFoundException:
                try:  # registered since the last refresh?
                    fv = store.get_feature_view(name, allow_registry_cache=False)
                except FeatureViewNotFoundException as exc:
                    raise NotFound(f"feature view {name!r} is not registered") from exc
            types = {c.name: str(c.dtype).lower() for c in fv.entity_columns}
            self._views[name] = (list(types), [f.name for f in fv.features], types)
        return self._views[name]

    def lookup(self, views: list[str], columns: list[str], entities: dict[str, list[Any]]) -> list[dict[str, Any] | None]:
        """Feature values of ``columns`` for each entity row; ``None`` for an entity the store lacks.

        Raises:
            NotFound: A feature view is not registered.
            InvalidRequest: A column is in none of the views, a join key is missing or unknown, or an
                id has the wrong type.
        """
        refs: list[str] = []
        join_keys: dict[str, str] = {}
        found: set[str] = set()
        for view in views:
            _, features, types = self._view(view)
            join_keys.update(types)
            for col in columns:
                if col in features and col not in found:
                    refs.append(f"{view}:{col}")
                    found.add(col)
        absent = [c for c in columns if c not in found]
        if absent:
            raise InvalidRequest(
                f"feature column(s) {absent} are in none of the feature views {views}; name the views the model was "
                "trained on, or send the values inline as instances",
                detail={"missing_columns": absent, "feature_views": views},
            )
        unknown = sorted(set(entities) - set(join_keys))
        lacking = sorted(set(join_keys) - set(entities))
        if unknown or lacking:
            raise InvalidRequest(
                f"entities must be keyed by the join key(s) {sorted(join_keys)}; "
                + (f"unknown: {unknown}" if unknown else f"missing: {lacking}"),
                detail={"join_keys": sorted(join_keys)},
            )
        for key, ids in entities.items():
            wants_int = "int" in join_keys[key]
            bad = [v for v in ids if (isinstance(v, bool) or not isinstance(v, int)) == wants_int]
            if bad:
                kind = "integers" if wants_int else "strings"
                raise InvalidRequest(f"ids of {key!r} must be {kind}; got {bad[:5]}", detail={"join_key": key})
        n = len(next(iter(entities.values())))
        rows = [{k: entities[k][i] for k in entities} for i in range(n)]
        result = self.store.get_online_features(features=refs, entity_rows=rows).to_dict()
        out: list[dict[str, Any] | None] = []
        for i in range(n):
            values = {c: result[c][i] for c in columns}
            out.append(None if all(v is None for v in values.values()) else values)
        return out
