"""Data-parallel trials: each Tune trial runs a Ray Train ``XGBoostTrainer`` / ``LightGBMTrainer`` over Ray Data shards.

Ray 2.60 runs Ray Train V2 by default (``RAY_TRAIN_V2_ENABLED`` defaults to on), whose documented
Tune + Train pattern is a Tune function trainable that builds a Trainer and calls ``fit()`` per
trial ("Hyperparameter Tuning with Ray Tune", Train V2 guide); the V2 trainers take a
``train_loop_per_worker`` (the legacy ``params=`` / ``datasets=`` form is deprecated, ray#50042). So:

* the trial function (:func:`_trial`) is the Tune trainable the in-memory mode uses through
  ``trials.run_trials``, with the same MLflow child-run and job-progress callbacks;
* its Trainer gets ``datasets={"train": ...}`` (Ray Data splits it, one shard per worker),
  ``ScalingConfig(num_workers=N)``, and ``RunConfig(failure_config=FailureConfig(max_failures))``
  with storage on S3, so a restarted worker group on any node finds the trial's checkpoint;
* each worker (:func:`_worker_loop`) trains ``xgboost.train`` / ``lightgbm.train`` on its shard
  (Ray Train wires XGBoost's collective / LightGBM's ``data_parallel`` network), checkpoints every
  ``ASGARD_TRAIN_CHECKPOINT_ROUNDS`` rounds and resumes from the latest checkpoint after a restart.
  Metrics are reported only with checkpoints: each report is a synchronous round trip;
* the trial then scores the validation dataset with Ray Data (the held-out metrics, from
  ``metrics.classification_metrics`` / ``regression_metrics`` as in memory) and leaves its booster on S3;
  the driver reuses the best trial's booster (no refit) and wraps it in the framework's sklearn class,
  so logging, signature, plots and scoring are those of the in-memory mode.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from asgard_ray.training.dataset import LABEL, ShardedData
from asgard_ray.training.estimators import build_estimator
from asgard_ray.training.metrics import classification_metrics, regression_metrics

if TYPE_CHECKING:
    from ray.data import Dataset

    from asgard_ray.config import Settings
    from asgard_ray.training.trials import TrialSpec

__all__ = ["MODEL_FILES", "booster_params", "load_trial_model", "run_dp_trials", "score_dataset", "wrap_booster"]

log = logging.getLogger(__name__)

MODEL_FILES = {"xgboost": "model.ubj", "lightgbm": "model.txt"}
"""The booster file of a checkpoint, per framework."""
TRAIN_METRIC_ROWS = 250_000
"""Training rows (a seeded sample) that the ``train_`` metrics of a data-parallel trial are computed on."""


def booster_params(spec: TrialSpec, params: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The native ``train()`` parameters and round count for the estimator the in-memory mode would build."""
    est = build_estimator(spec.framework, spec.model_type, spec.estimator, params)
    n_classes = spec.n_classes or 2
    if spec.framework == "xgboost":
        native = {k: v for k, v in est.get_xgb_params().items() if v is not None and k != "n_jobs"}
        native["nthread"] = 1
        if spec.model_type == "classification":
            native.update(objective="multi:softprob", num_class=n_classes) if n_classes > 2 else native.update(objective="binary:logistic")
        return native, int(est.n_estimators or 100)
    dropped = {"n_estimators", "class_weight", "importance_type", "n_jobs", "silent"}
    native = {k: v for k, v in est.get_params().items() if v is not None and k not in dropped}
    native.update(num_threads=1, verbose=-1)
    if spec.model_type == "classification":
        native.update(objective="multiclass", num_class=n_classes) if n_classes > 2 else native.update(objective="binary")
    else:
        native["objective"] = "regression"
    return native, int(est.n_estimators or 100)


def _report(framework: str, raw: bytes, rounds: int) -> None:
    """Report a checkpoint (rank 0 writes the booster) and the rounds done; every worker must call it."""
    import ray.train

    rank = ray.train.get_context().get_world_rank()
    if rank != 0:
        ray.train.report({"rounds": rounds})
        return
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, MODEL_FILES[framework]), "wb") as f:
            f.write(raw)
        ray.train.report({"rounds": rounds}, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def _raw(framework: str, booster: Any) -> bytes:
    return bytes(booster.save_raw("ubj")) if framework == "xgboost" else booster.model_to_string().encode()


def _load_booster(framework: str, raw: bytes) -> Any:
    if framework == "xgboost":
        import xgboost

        booster = xgboost.Booster()
        booster.load_model(bytearray(raw))
        return booster
    import lightgbm

    return lightgbm.Booster(model_str=raw.decode())


def _worker_loop(config: dict[str, Any]) -> None:
    """One Ray Train worker: train on this worker's shard, checkpoint every few rounds, resume after a restart."""
    import ray
    import ray.train

    framework, rounds, every = config["framework"], config["rounds"], config["every"]
    shard = ray.train.get_dataset_shard("train").materialize().to_pandas()
    X, y = shard[config["feature_columns"]], shard[LABEL].to_numpy()
    rank = ray.train.get_context().get_world_rank()
    start, done = None, 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder, open(os.path.join(folder, MODEL_FILES[framework]), "rb") as f:
            start = _load_booster(framework, f.read())
        done = start.num_boosted_rounds() if framework == "xgboost" else start.current_iteration()
        log.info("trial %s rank %d resumes at round %d of %d", config["trial_id"], rank, done, rounds)
    # what this worker trained on, where: the answer lists the nodes, tests check them
    marker = {
        "rank": rank,
        "node_id": ray.get_runtime_context().get_node_id(),
        "pid": os.getpid(),
        "rows": len(shard),
        "resumed_from": done,
    }
    fs, base = config["storage"]
    fs.create_dir(f"{base}/workers/{config['trial_id']}", recursive=True)
    with fs.open_output_stream(f"{base}/workers/{config['trial_id']}/{rank}.json") as f:
        f.write(json.dumps(marker).encode())
    remaining = rounds - done
    if remaining <= 0:
        _report(framework, _raw(framework, start), done)
        return
    if framework == "xgboost":
        import xgboost

        class _Checkpoints(xgboost.callback.TrainingCallback):
            def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
                n = model.num_boosted_rounds()
                if n % every == 0 or n == rounds:
                    _report(framework, _raw(framework, model), n)
                return False

        xgboost.train(config["params"], xgboost.DMatrix(X, label=y), num_boost_round=remaining, xgb_model=start, callbacks=[_Checkpoints()])
        return
    import lightgbm
    from ray.train.lightgbm import get_network_params

    def _checkpoints(env: Any) -> None:
        n = env.iteration + 1
        if n % every == 0 or n == rounds:
            _report(framework, _raw(framework, env.model), n)

    params = {**config["params"], "tree_learner": "data_parallel", "pre_partition": True, **get_network_params()}
    # Ray Data hands Arrow-backed pandas columns, which LightGBM refuses: give it float64 numpy and the names
    train_set = lightgbm.Dataset(X.to_numpy(dtype="float64"), label=y, feature_name=list(config["feature_columns"]))
    lightgbm.train(params, train_set, num_boost_round=remaining, init_model=start, callbacks=[_checkpoints])


def wrap_booster(framework: str, model_type: str, raw: bytes, n_classes: int | None) -> Any:
    """The framework's sklearn estimator around a trained booster (what the in-memory mode logs and scores)."""
    if framework == "xgboost":
        import xgboost

        model = xgboost.XGBClassifier() if model_type == "classification" else xgboost.XGBRegressor()
        model.load_model(bytearray(raw))
        return model
    import lightgbm
    from sklearn.preprocessing import LabelEncoder

    booster = _load_booster(framework, raw)
    model = lightgbm.LGBMClassifier(verbose=-1) if model_type == "classification" else lightgbm.LGBMRegressor(verbose=-1)
    # the sklearn wrapper has no public constructor from a booster: set what fit() would have set
    model._Booster = booster
    model.fitted_ = True
    model._n_features = model._n_features_in = booster.num_feature()
    model._feature_name = booster.feature_name()
    if model_type == "classification":
        k = n_classes or 2
        model._n_classes, model._classes = k, np.arange(k)
        model._le = LabelEncoder().fit(np.arange(k))
        model._objective = "multiclass" if k > 2 else "binary"
    else:
        model._objective = "regression"
    return model


_MODELS: dict[str, Any] = {}


def _predict(
    batch: pd.DataFrame, *, framework: str, model_type: str, raw: bytes, n_classes: int | None, feature_columns: list[str]
) -> pd.DataFrame:
    """One batch's label and predictions (class probabilities ``__p<i>``, or ``__pred``)."""
    key = hashlib.sha256(raw).hexdigest()
    if key not in _MODELS:
        _MODELS.clear()
        _MODELS[key] = wrap_booster(framework, model_type, raw, n_classes)
    model = _MODELS[key]
    out = pd.DataFrame({LABEL: batch[LABEL].to_numpy()})
    X = batch[feature_columns].astype("float64")  # numpy float64, as the model's signature says (not Arrow-backed)
    if model_type == "classification":
        proba = np.asarray(model.predict_proba(X), dtype="float64")
        for i in range(proba.shape[1]):
            out[f"__p{i}"] = proba[:, i]
    else:
        out["__pred"] = np.asarray(model.predict(X), dtype="float64")
    return out


def predictions(ds: Dataset, framework: str, model_type: str, raw: bytes, n_classes: int | None, feature_columns: list[str]) -> Dataset:
    """The label and predictions of every row of ``ds``, as a (lazy) dataset of a few numeric columns."""
    return ds.map_batches(
        _predict,  # type: ignore[arg-type]  # Ray stubs cannot type fn_kwargs functions
        batch_format="pandas",
        fn_kwargs={
            "framework": framework,
            "model_type": model_type,
            "raw": raw,
            "n_classes": n_classes,
            "feature_columns": feature_columns,
        },
    )


def score_dataset(ds: Dataset, spec: TrialSpec, raw: bytes, feature_columns: list[str], prefix: str = "") -> dict[str, float]:
    """The in-memory mode's metrics of a booster on the rows of ``ds`` (only labels and scores are collected)."""
    scored = predictions(ds, spec.framework, spec.model_type, raw, spec.n_classes, feature_columns).to_pandas()
    y = scored[LABEL].to_numpy()
    if spec.model_type == "classification":
        proba = scored[[c for c in scored.columns if c.startswith("__p")]].to_numpy()
        result = classification_metrics(y, proba.argmax(axis=1), proba, spec.n_classes or 2)
    else:
        result = regression_metrics(y, scored["__pred"].to_numpy())
    return {f"{prefix}{k}": v for k, v in result.items()}


def _storage(settings: Settings, job_id: str) -> tuple[Any, str]:
    from asgard_ray.storage import resolve

    root = settings.asgard_train_storage_uri or settings.state_uri("training", "runs")
    return resolve(settings, f"{root.rstrip('/')}/{job_id}")


def _trial(config: dict[str, Any], data: ShardedData, spec: TrialSpec, job_id: str, num_workers: int) -> None:
    """The Tune trainable of a data-parallel trial: one Ray Train fit, held-out metrics, the booster saved."""
    from ray import train, tune
    from ray.train.lightgbm import LightGBMTrainer
    from ray.train.xgboost import XGBoostTrainer

    settings, job = data.settings, job_id
    trial_id = tune.get_context().get_trial_id()
    fs, base = _storage(settings, job)
    params, rounds = booster_params(spec, {**spec.fixed_params, **config})
    trainer_cls = XGBoostTrainer if spec.framework == "xgboost" else LightGBMTrainer
    trainer = trainer_cls(
        _worker_loop,
        train_loop_config={
            "framework": spec.framework,
            "params": params,
            "rounds": rounds,
            "trial_id": trial_id,
            "every": settings.asgard_train_checkpoint_rounds,
            "feature_columns": data.feature_columns,
            "storage": (fs, base),
        },
        datasets={"train": data.train},
        # SPREAD: one worker per node where the cluster allows, so shards (and their memory) spread out
        scaling_config=train.ScalingConfig(
            num_workers=num_workers, placement_strategy="SPREAD", resources_per_worker={"CPU": settings.asgard_train_cpus_per_worker}
        ),
        run_config=train.RunConfig(
            name=f"trial-{trial_id}",
            storage_path=f"{base}/train",
            storage_filesystem=fs,
            failure_config=train.FailureConfig(max_failures=settings.asgard_train_max_failures),
            checkpoint_config=train.CheckpointConfig(num_to_keep=2),
        ),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"trial {spec.framework} ended without a checkpoint; no model to keep")
    with result.checkpoint.as_directory() as folder, open(os.path.join(folder, MODEL_FILES[spec.framework]), "rb") as f:
        raw = f.read()
    fs.create_dir(f"{base}/models", recursive=True)
    with fs.open_output_stream(f"{base}/models/{trial_id}") as f:
        f.write(raw)
    from asgard_ray.training.dataset import sample_frame

    sample = sample_frame(data.train, data.train_rows, TRAIN_METRIC_ROWS, seed=0)
    import ray.data

    metrics = score_dataset(ray.data.from_pandas(sample), spec, raw, data.feature_columns, prefix="train_")
    if data.has_validation:
        metrics.update(score_dataset(data.eval_ds, spec, raw, data.feature_columns))
    tune.report({**metrics, "num_workers": num_workers})


def load_trial_model(settings: Settings, job_id: str, trial_id: str) -> bytes:
    """The booster a trial left on S3."""
    fs, base = _storage(settings, job_id)
    with fs.open_input_file(f"{base}/models/{trial_id}") as f:
        return f.read()


def worker_markers(settings: Settings, job_id: str, trial_id: str) -> list[dict[str, Any]]:
    """What each worker of a trial recorded: rank, node id, rows of its shard (the last attempt's)."""
    import pyarrow.fs as pafs

    fs, base = _storage(settings, job_id)
    out = []
    for info in fs.get_file_info(pafs.FileSelector(f"{base}/workers/{trial_id}", allow_not_found=True)):
        if info.is_file:
            with fs.open_input_file(info.path) as f:
                out.append(json.loads(f.read()))
    return sorted(out, key=lambda m: m["rank"])


def cleanup(settings: Settings, job_id: str) -> None:
    """Delete a job's checkpoints and trial boosters (the best model is in MLflow by then)."""
    fs, base = _storage(settings, job_id)
    try:
        fs.delete_dir(base)
    except FileNotFoundError:
        log.debug("job %s: nothing to delete under %s", job_id, base)
    except OSError:
        log.warning("job %s: could not delete %s", job_id, base, exc_info=True)


def run_dp_trials(
    data: ShardedData,
    spec: TrialSpec,
    search_space: Any,
    *,
    job_id: str,
    num_workers: int,
    num_samples: int,
    max_concurrent_trials: int | None,
    callbacks: list[Any],
) -> Any:
    """Run the data-parallel trials through ``trials.run_trials`` (one trial at a time unless asked)."""
    from asgard_ray.training.trials import run_trials

    # the trial only drives its Trainer (Tune refuses a trial with no resources at all)
    return run_trials(
        data,
        spec,
        search_space,
        num_samples=num_samples,
        max_concurrent_trials=max_concurrent_trials or 1,
        callbacks=callbacks,
        name=job_id,
        trainable=_trial,
        resources={"cpu": 0.01},
        trainable_kwargs={"job_id": job_id, "num_workers": num_workers},
    )
