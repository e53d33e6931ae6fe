"""Resolve a registered model to a concrete version and load it in its native format.

Resolution happens on the driver (the API replica, then the job task) before any fan-out, so an
alias such as ``champion`` is pinned to one version for the whole job. The model is loaded once
per job with MLflow's own flavor loader (LightGBM, XGBoost or scikit-learn) and handed to the
scoring actors through the object store as the native object: the actors unpickle it with
LightGBM / scikit-learn / XGBoost alone and never import MLflow.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from collections import OrderedDict
from typing import Any

from pydantic import BaseModel, Field

from asgard_ray import lineage
from asgard_ray.config import Settings
from asgard_ray.errors import InvalidRequest

__all__ = ["NATIVE_FLAVORS", "ResolvedModel", "load_native_model", "resolve_model"]

log = logging.getLogger(__name__)

NATIVE_FLAVORS = ("lightgbm", "xgboost", "sklearn")


class ResolvedModel(BaseModel):
    """A registered model version and the lineage its training run recorded."""

    name: str
    version: str
    alias: str | None = None
    run_id: str | None = None
    model_uri: str
    source: str | None = None
    framework: str | None = None
    model_type: str | None = None
    feature_columns: list[str] = Field(default_factory=list)
    feature_views: list[str] = Field(default_factory=list)
    join_keys: list[str] = Field(default_factory=list)
    label: str | None = None
    classes: list[Any] | None = None
    feast_registry_version: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


def _json_list(value: str | None) -> list[Any] | None:
    if not value:
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        return [v.strip() for v in value.split(",") if v.strip()]
    return parsed if isinstance(parsed, list) else None


def _signature_columns(model_uri: str) -> list[str]:
    """Input column names from the model's signature (fallback when training tags are absent)."""
    try:
        from mlflow.models import get_model_info

        info = get_model_info(model_uri)
        if info.signature is not None and info.signature.inputs is not None:
            return [c for c in info.signature.inputs.input_names() if isinstance(c, str)]
    except Exception as exc:  # signature is optional
        log.debug("no signature for %s: %s", model_uri, exc)
    return []


def resolve_model(settings: Settings, name: str, version_or_alias: str) -> ResolvedModel:
    """Pin ``name``/``version_or_alias`` (a number, ``latest`` or an alias) to one version.

    Resolution is the registry's (``asgard_ray.registry.resolve_model_version``); this adds the
    training lineage scoring needs, parsed from the tags.

    Raises:
        NotFound: The model, version or alias does not exist.
    """
    from asgard_ray.registry import resolve_model_version

    version, run_id, model_uri, version_tags = resolve_model_version(settings, name, version_or_alias)
    ref = str(version_or_alias).strip()
    alias = None if ref.isdigit() or ref.lower() == "latest" else ref
    tags = dict(version_tags or {})
    features = _json_list(tags.get(lineage.TAG_FEATURE_COLUMNS)) or _signature_columns(model_uri)
    resolved = ResolvedModel(
        name=name,
        version=str(version),
        alias=alias,
        run_id=run_id or None,
        model_uri=model_uri,
        framework=tags.get(lineage.TAG_FRAMEWORK),
        model_type=tags.get(lineage.TAG_MODEL_TYPE),
        feature_columns=[str(c) for c in features],
        feature_views=[str(v) for v in _json_list(tags.get(lineage.TAG_FEATURE_VIEWS)) or []],
        join_keys=[str(k) for k in _json_list(tags.get(lineage.TAG_JOIN_KEYS)) or []],
        label=tags.get(lineage.TAG_LABEL),
        classes=_json_list(tags.get(lineage.TAG_CLASSES)),
        feast_registry_version=tags.get(lineage.TAG_FEAST_REGISTRY_VERSION),
        tags={k: v for k, v in tags.items() if not k.startswith("mlflow.")},
    )
    if not resolved.feature_columns:
        raise InvalidRequest(
            f"model {name!r} version {resolved.version} records no feature columns "
            f"(neither the {lineage.TAG_FEATURE_COLUMNS} tag nor a signature); retrain it through /mlops/models"
        )
    log.info("resolved model %s/%s -> version %s (run %s)", name, version_or_alias, resolved.version, run_id)
    return resolved


def load_native_model(settings: Settings, model: ResolvedModel) -> tuple[str, Any]:
    """Download the version's artifacts and load them with the native flavor's loader.

    A version's artifacts never change, so the last few loaded are kept in this process, keyed by
    tracking server, ``models:/<name>/<version>`` and source run (a version number MLflow hands out
    again after a delete comes from another run).

    Returns:
        ``(flavor, model_object)``; the object is a LightGBM/XGBoost booster or estimator, or a
        scikit-learn estimator. Callers must not change it (it is shared).
    """
    key = (settings.tracking_uri, model.model_uri, model.run_id)
    with _CACHE_LOCK:
        if key in _MODEL_CACHE:
            _MODEL_CACHE.move_to_end(key)
            return _MODEL_CACHE[key]
    loaded = _load_native_model(settings, model)
    with _CACHE_LOCK:
        _MODEL_CACHE[key] = loaded
        while len(_MODEL_CACHE) > _MODEL_CACHE_SIZE:
            _MODEL_CACHE.popitem(last=False)
    return loaded


_MODEL_CACHE: OrderedDict[tuple[str, str, str | None], tuple[str, Any]] = OrderedDict()
_MODEL_CACHE_SIZE = 4
_CACHE_LOCK = threading.Lock()


def _load_native_model(settings: Settings, model: ResolvedModel) -> tuple[str, Any]:
    import mlflow
    from mlflow.models import Model

    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    with tempfile.TemporaryDirectory(prefix="asgard-model-") as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=model.model_uri, dst_path=tmp)
        flavors = Model.load(local).flavors
        flavor = next((f for f in NATIVE_FLAVORS if f in flavors), None)
        if flavor is None:
            raise InvalidRequest(
                f"model {model.name!r} version {model.version} has flavors {sorted(flavors)}; "
                f"batch scoring loads {', '.join(NATIVE_FLAVORS)} models natively"
            )
        loader = {"lightgbm": mlflow.lightgbm, "xgboost": mlflow.xgboost, "sklearn": mlflow.sklearn}[flavor]
        obj = loader.load_model(local)
    log.info("loaded model %s/%s natively (%s, %s)", model.name, model.version, flavor, type(obj).__name__)
    return flavor, obj
