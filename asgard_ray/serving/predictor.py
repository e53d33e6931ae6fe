"""Answer one real-time prediction request: resolve the model, get the features, predict, explain.

This is the body of a prediction replica, written as a plain class (no Ray, no HTTP) so that the
deployment, the tests and the benchmark's plain-uvicorn baseline all run the very same code.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

import numpy as np
import pandas as pd

from asgard_ray.config import Settings
from asgard_ray.errors import InvalidRequest, PayloadTooLarge
from asgard_ray.scoring.predict import Prediction
from asgard_ray.serving.model_cache import LoadedModel, ModelCache
from asgard_ray.serving.online import OnlineFeatures
from asgard_ray.serving.schemas import DEFAULT_REF, PredictionRow, PredictRequest, PredictResponse

__all__ = ["Predictor", "check_rows", "inline_frame", "inline_matrix"]

log = logging.getLogger(__name__)


def check_rows(request: PredictRequest, max_rows: int) -> None:
    """Refuse a request over the real-time row limit (413, pointing at batch scoring)."""
    if request.rows > max_rows:
        raise PayloadTooLarge(
            f"{request.rows} rows exceed the real-time limit of {max_rows} (ASGARD_SERVE_MAX_ROWS); "
            "score large entity sets with POST /mlops/serve/batch",
            detail={"rows": request.rows, "max_rows": max_rows, "batch_endpoint": "/mlops/serve/batch"},
        )


def _number(value: Any) -> bool:
    return value is None or (
        isinstance(value, int | float) and not isinstance(value, bool) and (not isinstance(value, float) or math.isfinite(value))
    )


def inline_matrix(instances: list[dict[str, Any]], columns: list[str]) -> np.ndarray:
    """The model's input rows from inline instances, as float64 in ``columns`` order (null -> NaN).

    Raises:
        InvalidRequest: A column is missing from some row, or a value is not a finite number or null.
    """
    missing = sorted({c for row in instances for c in columns if c not in row})
    if missing:
        raise InvalidRequest(
            f"instances lack the feature column(s) {missing}; the model needs {columns}",
            detail={"missing_columns": missing, "feature_columns": columns},
        )
    bad = [(i, c, row[c]) for i, row in enumerate(instances) for c in columns if not _number(row[c])]
    if bad:
        i, col, value = bad[0]
        raise InvalidRequest(
            f"feature {col!r} of instance {i} is {type(value).__name__} {str(value)[:40]!r}; features take finite numbers or null",
            detail={"wrong_types": [{"row": i, "column": c, "type": type(v).__name__} for i, c, v in bad[:20]]},
        )
    return np.array([[row[c] for c in columns] for row in instances], dtype="float64")


def inline_frame(instances: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """``inline_matrix`` as a frame with the model's column names.

    Raises:
        InvalidRequest: A column is missing from some row, or a value is not a number.
    """
    return pd.DataFrame(inline_matrix(instances, columns), columns=columns)


def _plain(value: Any) -> Any:
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _rows(
    model: LoadedModel, result: Prediction, features: list[dict[str, Any]], entities: list[dict[str, Any]] | None
) -> list[PredictionRow]:
    # model_construct: every value here comes from this code (the request was validated), so skip re-validation
    out = []
    classes = [str(c) for c in result.classes] if result.proba is not None and result.classes else None
    for i, feats in enumerate(features):
        proba = dict(zip(classes, result.proba[i].tolist(), strict=True)) if classes is not None and result.proba is not None else None
        out.append(
            PredictionRow.model_construct(
                entity=entities[i] if entities else None,
                prediction=_plain(result.prediction[i]),
                probabilities=proba,
                model_version=model.version,
                features=feats,
            )
        )
    return out


class Predictor:
    """Models, online features and row limits of one replica (or one plain process)."""

    def __init__(self, settings: Settings, cache: ModelCache | None = None, online: OnlineFeatures | None = None) -> None:
        self.settings = settings
        self.cache = cache or ModelCache(settings, settings.asgard_serve_model_cache_size)
        self.online = online or OnlineFeatures(settings)

    async def predict(self, request: PredictRequest) -> PredictResponse:
        """Predict every row of ``request`` with the version its reference points at now.

        Raises:
            PayloadTooLarge: Over ``ASGARD_SERVE_MAX_ROWS`` rows.
            NotFound: Unknown model, version, alias or feature view.
            InvalidRequest: Missing feature columns, wrong types, wrong join keys.
        """
        start = time.perf_counter()
        check_rows(request, self.settings.asgard_serve_max_rows)
        model = await self.cache.get(request.model_name, request.ref)  # held to the end: a swap cannot pull it away
        columns = model.feature_columns
        missing: list[dict[str, Any]] = []
        entity_rows: list[dict[str, Any]] | None = None
        if request.instances is not None:
            X = inline_matrix(request.instances, columns)
            features = [{c: _plain(row[c]) for c in columns} for row in request.instances]
        else:
            assert request.entities is not None
            views = request.feature_views or model.resolved.feature_views
            if not views:
                raise InvalidRequest(
                    f"model {request.model_name!r} v{model.version} records no feature views; name them in feature_views or send instances"
                )
            looked = await asyncio.to_thread(self.online.lookup, views, columns, request.entities)
            n = len(looked)
            all_rows = [{k: request.entities[k][i] for k in request.entities} for i in range(n)]
            missing = [all_rows[i] for i in range(n) if looked[i] is None]
            entity_rows = [all_rows[i] for i in range(n) if looked[i] is not None]
            features = [v for v in looked if v is not None]
            X = np.array([[f[c] for c in columns] for f in features], dtype="float64").reshape(len(features), len(columns))
        rows = _rows(model, model.predict_matrix(X), features, entity_rows) if len(X) else []
        alias = None if request.ref.isdigit() or request.ref in (DEFAULT_REF, "latest") else request.ref
        return PredictResponse.model_construct(
            model_name=request.model_name,
            model_version=model.version,
            alias=alias,
            predictions=rows,
            missing_entities=missing,
            latency_ms=round((time.perf_counter() - start) * 1000, 3),
        )
