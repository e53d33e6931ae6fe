"""Estimators per framework: build, validate parameters, set threads, and log with MLflow's native flavor.

A fit runs on as many threads as the CPUs its trial holds (``n_jobs``), never on the framework's
default: OpenMP pools left at their default oversubscribe the node (LightGBM slows 18x after
xgboost in the same process), and trials that run side by side each hold their own CPUs. The MLflow
``log_model`` call sits here, once, because its arguments change between
MLflow releases (``name=`` replaced ``artifact_path=`` in MLflow 3; sklearn now saves with skops).

``check_param_bounds`` bounds the parameters that size the work or break a fit (tree counts, depth,
leaves, bins, learning rate, seeds), fixed or tuned, per framework, before any job starts. The work
limits are settings (``ASGARD_MAX_ESTIMATORS``, ``ASGARD_MAX_TREE_DEPTH``, ``ASGARD_MAX_LEAVES``,
``ASGARD_MAX_BINS``); the validity ranges (learning rate and fractions in (0, 1], seeds in
[0, 2**31-1]) are properties of the algorithms, so they are constants here.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asgard_ray.errors import InvalidRequest

if TYPE_CHECKING:
    from asgard_ray.config import Settings
    from asgard_ray.training.schemas import SearchDimension

__all__ = [
    "DEFAULT_RANDOM_STATE",
    "SKLEARN_ESTIMATORS",
    "THREAD_PARAMS",
    "ParamBound",
    "build_estimator",
    "check_param_bounds",
    "estimator_class",
    "log_model",
    "param_bounds",
    "resolve_params",
]

log = logging.getLogger(__name__)

DEFAULT_RANDOM_STATE = 42
THREAD_PARAMS = frozenset({"n_jobs", "nthread", "num_threads", "thread_count"})
"""Parameters that set a fit's thread count; the platform sets them from the CPUs a trial holds."""

SKLEARN_ESTIMATORS: dict[str, tuple[str, str]] = {
    "RandomForest": ("sklearn.ensemble.RandomForestClassifier", "sklearn.ensemble.RandomForestRegressor"),
    "ExtraTrees": ("sklearn.ensemble.ExtraTreesClassifier", "sklearn.ensemble.ExtraTreesRegressor"),
    "GradientBoosting": ("sklearn.ensemble.GradientBoostingClassifier", "sklearn.ensemble.GradientBoostingRegressor"),
    "HistGradientBoosting": (
        "sklearn.ensemble.HistGradientBoostingClassifier",
        "sklearn.ensemble.HistGradientBoostingRegressor",
    ),
    "AdaBoost": ("sklearn.ensemble.AdaBoostClassifier", "sklearn.ensemble.AdaBoostRegressor"),
}
_BOOSTERS = {
    "xgboost": ("xgboost.XGBClassifier", "xgboost.XGBRegressor"),
    "lightgbm": ("lightgbm.LGBMClassifier", "lightgbm.LGBMRegressor"),
}
# Accepted by the booster's constructor as **kwargs although get_params() does not list them.
_EXTRA_PARAMS = {
    "xgboost": {"eta", "lambda", "alpha"},
    "lightgbm": {
        "verbose",
        "verbosity",
        "min_data_in_leaf",
        "feature_fraction",
        "bagging_fraction",
        "bagging_freq",
        "lambda_l1",
        "lambda_l2",
    },
}


def _canonical_estimator(name: str | None) -> str:
    if name is None:
        return "RandomForest"
    key = name.strip().removesuffix("Classifier").removesuffix("Regressor").replace("_", "").lower()
    for canonical in SKLEARN_ESTIMATORS:
        if canonical.lower() == key:
            return canonical
    raise InvalidRequest(f"unknown sklearn estimator {name!r}; use one of {', '.join(SKLEARN_ESTIMATORS)}")


def estimator_class(framework: str, model_type: str, estimator: str | None = None) -> type:
    """The estimator class for a framework, model type and (sklearn) estimator name."""
    if model_type not in ("classification", "regression"):
        raise InvalidRequest(f"unknown model_type {model_type!r}; use classification or regression")
    index = 0 if model_type == "classification" else 1
    if framework == "sklearn":
        path = SKLEARN_ESTIMATORS[_canonical_estimator(estimator)][index]
    elif framework in _BOOSTERS:
        if estimator is not None:
            raise InvalidRequest(f"`estimator` picks an sklearn ensemble; leave it out for framework {framework!r}")
        path = _BOOSTERS[framework][index]
    else:
        raise InvalidRequest(f"unknown framework {framework!r}; use sklearn, xgboost or lightgbm")
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def resolve_params(
    framework: str, model_type: str, estimator: str | None, params: dict[str, Any], tuned: list[str] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Check parameter names against the estimator and add the platform's defaults.

    Returns:
        The fixed parameters to use (with ``random_state`` and one thread) and warnings to report.

    Raises:
        InvalidRequest: A parameter name the estimator does not take.
    """
    cls = estimator_class(framework, model_type, estimator)
    known = set(cls().get_params()) | _EXTRA_PARAMS.get(framework, set())
    names = [*params, *(tuned or [])]
    unknown = sorted(n for n in names if n not in known and n not in THREAD_PARAMS)
    if unknown:
        raise InvalidRequest(
            f"{cls.__name__} has no parameter(s) {', '.join(unknown)}",
            detail={"valid_parameters": sorted(known - THREAD_PARAMS)},
        )
    warnings: list[str] = []
    pinned = sorted(n for n in names if n in THREAD_PARAMS)
    if pinned:
        warnings.append(f"ignored {', '.join(pinned)}: a trial fits on as many threads as the CPUs it holds")
    fixed = {k: v for k, v in params.items() if k not in THREAD_PARAMS}
    if "random_state" in known and "random_state" not in fixed and "random_state" not in (tuned or []):
        fixed["random_state"] = DEFAULT_RANDOM_STATE
    return fixed, warnings


@dataclass(frozen=True)
class ParamBound:
    """The accepted range of one numeric estimator parameter."""

    low: float
    high: float
    low_open: bool = False
    none_ok: bool = False
    setting: str | None = None

    def describe(self) -> str:
        """The range in words, for error messages."""
        low = f"above {self.low:g}" if self.low_open else f"at least {self.low:g}"
        text = f"a number {low} and at most {self.high:g}"
        if self.none_ok:
            text += " (or null)"
        if self.setting:
            text += f"; the upper limit is the setting {self.setting}"
        return text

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is refused, or None if it is in range."""
        if value is None:
            return None if self.none_ok else "must not be null"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"must be {self.describe()}"
        below = value <= self.low if self.low_open else value < self.low
        if below or value > self.high:
            return f"= {value!r} is out of range: use {self.describe()}"
        return None


_SEED_MAX = 2**31 - 1
_UNIT = ParamBound(0.0, 1.0, low_open=True, none_ok=True)


def param_bounds(framework: str, settings: Settings) -> dict[str, ParamBound]:
    """The bounds of a framework's known parameters under these settings."""
    trees = ParamBound(1, settings.asgard_max_estimators, none_ok=framework == "xgboost", setting="ASGARD_MAX_ESTIMATORS")
    seed = ParamBound(0, _SEED_MAX, none_ok=True)
    depth_low = {"sklearn": 1, "xgboost": 0, "lightgbm": -1}.get(framework, 1)  # xgboost 0 / lightgbm -1: no limit
    depth = ParamBound(depth_low, settings.asgard_max_tree_depth, none_ok=framework != "lightgbm", setting="ASGARD_MAX_TREE_DEPTH")
    leaves_setting = "ASGARD_MAX_LEAVES"
    common = {
        "n_estimators": trees,
        "max_depth": depth,
        "random_state": seed,
        "learning_rate": ParamBound(0.0, 1.0, low_open=True, none_ok=framework == "xgboost"),
    }
    if framework == "sklearn":
        return {
            **common,
            "max_iter": ParamBound(1, settings.asgard_max_estimators, setting="ASGARD_MAX_ESTIMATORS"),
            "max_leaf_nodes": ParamBound(2, settings.asgard_max_leaves, none_ok=True, setting=leaves_setting),
        }
    if framework == "xgboost":
        return {
            **common,
            "eta": common["learning_rate"],
            "seed": seed,
            "num_parallel_tree": trees,
            "max_leaves": ParamBound(0, settings.asgard_max_leaves, none_ok=True, setting=leaves_setting),
            "max_bin": ParamBound(2, settings.asgard_max_bins, none_ok=True, setting="ASGARD_MAX_BINS"),
            **{k: _UNIT for k in ("subsample", "colsample_bytree", "colsample_bylevel", "colsample_bynode")},
        }
    if framework == "lightgbm":
        return {
            **common,
            "num_leaves": ParamBound(2, settings.asgard_max_leaves, setting=leaves_setting),
            **{k: _UNIT for k in ("subsample", "colsample_bytree", "feature_fraction", "bagging_fraction")},
        }
    return common


def _largest(name: str, params: dict[str, Any], space: dict[str, SearchDimension], default: float) -> float:
    if name in params:
        value = params[name]
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default
    dim = space.get(name)
    if dim is None:
        return default
    if dim.type in ("choice", "grid"):
        numbers = [v for v in dim.values or [] if isinstance(v, int | float) and not isinstance(v, bool)]
        return float(max(numbers, default=default))
    return float(dim.upper() or default)


def check_param_bounds(framework: str, params: dict[str, Any], search_space: dict[str, SearchDimension] | None, settings: Settings) -> None:
    """Refuse known parameters out of range, whether fixed in ``params`` or tuned in ``search_space``.

    Raises:
        InvalidRequest: Every out-of-range parameter, named, with its accepted range.
    """
    bounds = param_bounds(framework, settings)
    space = search_space or {}
    problems: list[str] = []
    for name, value in params.items():
        bound = bounds.get(name)
        why = bound.problem(value) if bound else None
        if why:
            problems.append(f"{name} {why}")
    for name, dim in space.items():
        bound = bounds.get(name)
        if bound is None:
            continue
        values = list(dim.values or []) if dim.type in ("choice", "grid") else [dim.low, dim.upper()]
        for value in values:
            why = bound.problem(value)
            if why:
                problems.append(f"search_space.{name} {why}")
                break
    if framework == "xgboost" and not problems:
        trees = _largest("n_estimators", params, space, 100) * _largest("num_parallel_tree", params, space, 1)
        if trees > settings.asgard_max_estimators:
            problems.append(
                f"n_estimators x num_parallel_tree can reach {trees:g} trees, over the limit "
                f"{settings.asgard_max_estimators} (setting ASGARD_MAX_ESTIMATORS)"
            )
    if problems:
        raise InvalidRequest("; ".join(problems), detail={"problems": problems})


def build_estimator(framework: str, model_type: str, estimator: str | None, params: dict[str, Any], threads: int = 1) -> Any:
    """Instantiate the estimator with these parameters, fitting on ``threads`` threads (the CPUs its trial holds)."""
    cls = estimator_class(framework, model_type, estimator)
    kwargs = {k: v for k, v in params.items() if k not in THREAD_PARAMS}
    accepted = cls().get_params()
    if "n_jobs" in accepted:
        kwargs["n_jobs"] = max(1, int(threads))
    if framework == "lightgbm":
        kwargs.setdefault("verbose", -1)
    if framework == "xgboost":
        kwargs.setdefault("verbosity", 0)
    return cls(**kwargs)


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _requirements(framework: str) -> list[str]:
    """Pinned requirements of the logged model (explicit: inferring them costs seconds per model)."""
    dists = {
        "sklearn": [("scikit-learn", "scikit-learn"), ("skops", "skops")],
        "xgboost": [("xgboost", "xgboost-cpu"), ("xgboost", "xgboost"), ("scikit-learn", "scikit-learn")],
        "lightgbm": [("lightgbm", "lightgbm"), ("scikit-learn", "scikit-learn"), ("skops", "skops")],
    }[framework]
    reqs = [f"mlflow=={_version('mlflow')}", f"pandas=={_version('pandas')}", f"numpy=={_version('numpy')}"]
    seen: set[str] = set()
    for name, dist in dists:
        version = _version(dist)
        if version and name not in seen:
            reqs.append(f"{name}=={version}")
            seen.add(name)
    return reqs


_TRUSTED: dict[type, list[str]] = {}


def _trusted_types(cls: type, model: Any) -> list[str]:
    """The skops types a model of this class holds (found once per class and process: it costs seconds)."""
    if cls not in _TRUSTED:
        import skops.io

        _TRUSTED[cls] = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    return _TRUSTED[cls]


def save_model(framework: str, model: Any, path: str, signature: Any, input_example: Any) -> None:
    """Save ``model`` to a local ``path`` as ``log_model`` would log it (the warm workers' rehearsal uses it)."""
    flavor = importlib.import_module(f"mlflow.{framework}")
    trusted = {} if framework == "xgboost" else {"skops_trusted_types": _trusted_types(type(model), model)}
    flavor.save_model(model, path, signature=signature, input_example=input_example, pip_requirements=_requirements(framework), **trusted)


def log_model(framework: str, model: Any, name: str, signature: Any, input_example: Any) -> str:
    """Log ``model`` with the framework's native MLflow flavor under the active run; return its URI.

    The model is the platform's own fit, so the skops types it contains are trusted explicitly.
    """
    common = {"name": name, "signature": signature, "input_example": input_example, "pip_requirements": _requirements(framework)}
    if framework == "xgboost":
        import mlflow.xgboost

        info = mlflow.xgboost.log_model(model, **common)
    else:
        from mlflow.exceptions import MlflowException

        flavor = importlib.import_module(f"mlflow.{framework}")
        try:
            info = flavor.log_model(model, skops_trusted_types=_trusted_types(type(model), model), **common)
        except MlflowException as exc:
            if "untrusted" not in str(exc).lower():
                raise
            _TRUSTED.pop(type(model), None)  # this model holds types others of its class did not
            info = flavor.log_model(model, skops_trusted_types=_trusted_types(type(model), model), **common)
    return info.model_uri
