"""Data-parallel trials: N gang-scheduled Ray tasks fit one booster over N shards, with XGBoost's or LightGBM's own collective.

Why not Ray Train's trainers: a Ray Train V2 ``fit()`` starts a controller actor, a worker group of
new actor processes (each importing Ray Train and the framework) and a dataset split coordinator.
On 2 cores that cost 13-25 s per fit of 1,000 rows (``bench/train_scale.py``, issue 24's note), so
data-parallel training lost to one process up to millions of rows. Here the workers are Ray tasks,
which run on processes Ray keeps warm between jobs, placed together in one placement group:

- The job reserves ``num_workers`` bundles of ``cpus_per_worker`` CPUs, spread over nodes
  (``runtime.reserve_cpus``, bounded by ``ASGARD_JOB_PENDING_TIMEOUT_S``); each worker fits with as
  many threads as its bundle has CPUs.
- The prepared training and validation sets are split into ``num_workers`` shards once per job
  (``Dataset.split``: Arrow blocks in the object store); a worker reads its shard zero-copy on its node.
- XGBoost: a ``RabitTracker`` on the driver, ``xgboost.collective`` in each worker (histogram
  allreduce; the quantile sketch is merged across workers). LightGBM: ``tree_learner=data_parallel``
  with the workers' addresses, found by a probe task in each bundle.
- Rank 0 writes the booster to the training state location every ``ASGARD_TRAIN_CHECKPOINT_S``
  seconds. When a worker dies (killed, node lost), the driver cancels the others and starts the trial
  again on a fresh gang, from that checkpoint, up to ``ASGARD_TRAIN_MAX_FAILURES`` times.
- Each worker predicts its own validation shard and a sample of its training shard with the
  finished booster and hands back only labels and predictions: the driver computes the metrics with
  the in-memory mode's functions over every validation row, so both modes report the same metrics.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from asgard_ray.training.dataset import LABEL, SPLIT, ShardedData, in_bounds
from asgard_ray.training.estimators import build_estimator
from asgard_ray.training.metrics import classification_metrics, regression_metrics
from asgard_ray.training.trials import TRAIN_METRIC_ROWS, Trial, TrialCallback, TrialResult, TrialsOutcome, beats, error_text, notify

if TYPE_CHECKING:
    from asgard_ray.config import Settings
    from asgard_ray.training.trials import TrialSpec

__all__ = ["MODEL_FILES", "DataParallelFit", "booster_params", "run_dp_trials", "wrap_booster"]

log = logging.getLogger(__name__)

MODEL_FILES = {"xgboost": "model.ubj", "lightgbm": "model.txt"}
"""The booster file of a checkpoint, per framework."""


@dataclass
class DataParallelFit:
    """The best data-parallel trial: its booster, its validation labels and predictions, and where it ran."""

    raw: bytes
    eval_label: np.ndarray
    eval_pred: np.ndarray
    eval_proba: np.ndarray | None
    workers: list[dict[str, Any]] = field(default_factory=list)


def booster_params(spec: TrialSpec, params: dict[str, Any], threads: int) -> tuple[dict[str, Any], int]:
    """The native ``train()`` parameters and round count for the estimator the in-memory mode would build."""
    est = build_estimator(spec.framework, spec.model_type, spec.estimator, params, threads=threads)
    n_classes = spec.n_classes or 2
    if spec.framework == "xgboost":
        native = {k: v for k, v in est.get_xgb_params().items() if v is not None and k != "n_jobs"}
        native["nthread"] = threads
        if spec.model_type == "classification":
            native.update(objective="multi:softprob", num_class=n_classes) if n_classes > 2 else native.update(objective="binary:logistic")
        return native, int(est.n_estimators or 100)
    dropped = {"n_estimators", "class_weight", "importance_type", "n_jobs", "silent"}
    native = {k: v for k, v in est.get_params().items() if v is not None and k not in dropped}
    native.update(num_threads=threads, verbose=-1)
    if spec.model_type == "classification":
        native.update(objective="multiclass", num_class=n_classes) if n_classes > 2 else native.update(objective="binary")
    else:
        native["objective"] = "regression"
    return native, int(est.n_estimators or 100)


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


@dataclass
class Shard:
    """One worker's rows: blocks to train on and to validate on, and which of their rows belong to each side."""

    train: list[Any]
    train_bounds: tuple[Any, Any]
    val: list[Any]
    val_bounds: tuple[Any, Any] | None


# --- inside a worker ---------------------------------------------------------------------------------
def _arrays(refs: list[Any], feature_columns: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A shard's features (float32), labels and split values, from its Arrow blocks in the object store."""
    import pyarrow as pa
    import ray

    blocks = [b for b in ray.get(refs) if b.num_rows]
    if not blocks:
        return np.zeros((0, len(feature_columns)), dtype=np.float32), np.zeros(0), np.zeros(0)
    table = pa.concat_tables(blocks)
    X = np.empty((table.num_rows, len(feature_columns)), dtype=np.float32)
    for i, col in enumerate(feature_columns):
        X[:, i] = table.column(col).to_numpy()
    return X, table.column(LABEL).to_numpy(), table.column(SPLIT).to_numpy()


def _probe() -> tuple[str, int]:
    """This bundle's node address and a free port on it (LightGBM's workers listen on it)."""
    import ray

    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    return ray.util.get_node_ip_address(), port


def _predict(framework: str, booster: Any, X: np.ndarray, model_type: str, n_classes: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels (class indices) or values, and class probabilities, of a booster on ``X``."""
    if framework == "xgboost":
        import xgboost

        out = np.asarray(booster.predict(xgboost.DMatrix(X)), dtype=np.float64)
    else:
        out = np.asarray(booster.predict(X), dtype=np.float64)
    if model_type != "classification":
        return out, None
    proba = np.column_stack([1.0 - out, out]) if out.ndim == 1 else out
    if (n_classes or 2) == 1:
        proba = proba[:, :1]
    return proba.argmax(axis=1), proba


def _sides(shard: Shard, features: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A shard's training rows and validation rows (its blocks read once when both sides share them)."""

    def pick(arrays: tuple[np.ndarray, np.ndarray, np.ndarray], bounds: tuple[Any, Any] | None) -> tuple[np.ndarray, np.ndarray]:
        X, y, side = arrays
        if bounds is None:
            return X[:0], y[:0]
        keep = in_bounds(side, bounds)
        return (X, y) if keep.all() else (X[keep], y[keep])

    train = _arrays(shard.train, features)
    val = train if shard.val is shard.train else _arrays(shard.val, features)  # one pickled list: one read
    return (*pick(train, shard.train_bounds), *pick(val, shard.val_bounds))


def _worker(job: dict[str, Any], rank: int, shard: Shard, network: dict[str, Any]) -> dict[str, Any]:
    """One data-parallel worker of one trial: train on its shard's training rows with the others, then predict."""
    import ray

    from asgard_ray.storage import read_bytes, write_bytes

    framework, rounds, every_s = job["framework"], job["rounds"], job["checkpoint_s"]
    X, y, Xv, yv = _sides(shard, job["feature_columns"])
    sample = np.arange(len(y))
    if len(y) > job["train_sample"]:
        sample = np.sort(np.random.default_rng(rank).choice(len(y), job["train_sample"], replace=False))
    Xt, yt = X[sample], y[sample]
    start, done = None, 0
    if job["resume"]:
        start = _load_booster(framework, read_bytes(job["settings"], job["resume"]))
        done = start.num_boosted_rounds() if framework == "xgboost" else start.current_iteration()
    marker = {"rank": rank, "node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid(), "rows": len(y), "resumed_from": done}
    write_bytes(job["settings"], f"{job['root']}/workers/{job['trial_id']}/{rank}.json", json.dumps(marker).encode())
    last = [time.monotonic()]

    def checkpoint(booster: Any, n: int) -> None:
        if rank != 0 or time.monotonic() - last[0] < every_s or n >= rounds:
            return
        write_bytes(job["settings"], job["checkpoint"], _raw(framework, booster))
        last[0] = time.monotonic()
        log.info("trial %s: checkpoint at round %d of %d", job["trial_id"], n, rounds)

    remaining = rounds - done
    booster = start
    if framework == "xgboost":
        import xgboost
        from xgboost import collective

        class _Checkpoints(xgboost.callback.TrainingCallback):
            def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
                checkpoint(model, model.num_boosted_rounds())
                return False

        with collective.CommunicatorContext(**network):
            dtrain = xgboost.QuantileDMatrix(X, label=y, nthread=job["params"]["nthread"])
            if remaining > 0:
                booster = xgboost.train(job["params"], dtrain, num_boost_round=remaining, xgb_model=start, callbacks=[_Checkpoints()])
    else:
        import lightgbm

        def _checkpoints(env: Any) -> None:
            checkpoint(env.model, env.iteration + 1)

        params = {**job["params"], **network, "tree_learner": "data_parallel", "pre_partition": True}
        dataset = lightgbm.Dataset(X, label=y, feature_name=list(job["feature_columns"]), free_raw_data=True)
        if remaining > 0:
            booster = lightgbm.train(params, dataset, num_boost_round=remaining, init_model=start, callbacks=[_checkpoints])
    del X
    kind, k = job["model_type"], job["n_classes"]
    out: dict[str, Any] = {**marker, "raw": _raw(framework, booster) if rank == 0 else None}
    out["eval_label"], (out["eval_pred"], out["eval_proba"]) = yv, _predict(framework, booster, Xv, kind, k)
    out["train_label"], (out["train_pred"], out["train_proba"]) = yt, _predict(framework, booster, Xt, kind, k)
    return out


# --- on the driver ---------------------------------------------------------------------------------
def _metrics(spec: TrialSpec, y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None, prefix: str = "") -> dict[str, float]:
    if spec.model_type == "classification":
        scores = proba if proba is not None else np.zeros((len(y), 0))
        result = classification_metrics(y.astype(np.int64), pred, scores, spec.n_classes or 2)
    else:
        result = regression_metrics(y, pred)
    return {f"{prefix}{k}": v for k, v in result.items()}


def _gather(outs: list[dict[str, Any]], key: str) -> np.ndarray:
    parts = [o[key] for o in outs if o[key] is not None and len(o[key])]
    return np.concatenate(parts) if parts else np.zeros(0)


def _gang(settings: Settings, group: Any, job: dict[str, Any], shards: list[Shard], cpus: float) -> list[dict[str, Any]]:
    """Run one trial's workers together; the first one that fails cancels the others and raises."""
    import ray

    from asgard_ray.runtime import in_bundle

    n = len(shards)
    tracker: Any = None
    if job["framework"] == "xgboost":
        from xgboost.tracker import RabitTracker

        host, timeout = ray.util.get_node_ip_address(), int(settings.asgard_job_pending_timeout_s)
        tracker = RabitTracker(host_ip=host, n_workers=n, sortby="task", timeout=timeout)
        tracker.start()
        base = tracker.worker_args()
        networks = [{**base, "dmlc_task_id": f"{rank:05d}"} for rank in range(n)]
    else:
        probe = ray.remote(_probe)
        found = ray.get([probe.options(num_cpus=cpus, scheduling_strategy=in_bundle(group, r)).remote() for r in range(n)])
        machines = ",".join(f"{ip}:{port}" for ip, port in found)
        networks = [{"num_machines": n, "local_listen_port": port, "machines": machines, "time_out": 5} for _, port in found]
    task = ray.remote(_worker)
    refs = [
        task.options(num_cpus=cpus, max_retries=0, name=f"{job['name']}:worker-{rank}", scheduling_strategy=in_bundle(group, rank)).remote(
            job, rank, shards[rank], networks[rank]
        )
        for rank in range(n)
    ]
    pending: list[Any] = list(refs)
    outs: dict[int, Any] = {}
    try:
        return _gather_gang(refs, pending, outs)
    finally:
        if tracker is not None:
            try:
                tracker.free()  # after a lost worker it reports that worker's broken connection: known already
            except Exception as exc:
                log.debug("%s: the collective's tracker ended with %s", job["name"], exc)


def _gather_gang(refs: list[Any], pending: list[Any], outs: dict[int, Any]) -> list[dict[str, Any]]:
    """Every worker's output; on the first failure cancel the others and raise (``_WorkerLost`` if one died)."""
    import ray

    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            outs[refs.index(done[0])] = ray.get(done[0])  # the first failure raises here
    except BaseException as exc:
        lost = _system_failure(exc)
        if not lost and pending:  # a worker's own error may be the echo of a peer that died: look at the others
            finished, pending = ray.wait(pending, num_returns=len(pending), timeout=5)
            for ref in finished:
                try:
                    ray.get(ref)
                except Exception as other:
                    lost = lost or _system_failure(other)
        for ref in pending:
            ray.cancel(ref, force=True)  # the others wait in the collective for the one that failed
        if lost:
            raise _WorkerLost(str(exc)) from exc
        raise
    return [outs[r] for r in range(len(refs))]


class _WorkerLost(Exception):
    """A data-parallel worker died (killed, out of memory, node lost): the gang starts again."""


def _system_failure(exc: BaseException) -> bool:
    import ray.exceptions as rex

    return isinstance(exc, rex.WorkerCrashedError | rex.NodeDiedError | rex.ObjectLostError | rex.OwnerDiedError | rex.ActorDiedError)


def _even(ds: Any, n: int) -> list[list[Any]]:
    rows = ds.count()
    return [part.to_arrow_refs() for part in ds.split_at_indices([rows * k // n for k in range(1, n)])]  # none dropped


def _keep(batch: Any, *, bounds: tuple[Any, Any]) -> Any:
    return batch[in_bounds(batch[SPLIT].to_numpy(), bounds)]


def _shards(data: ShardedData, n: int) -> list[Shard]:
    """Each worker's blocks (split once per job; Arrow blocks in the object store), with as many training rows each.

    A hash split spreads both sides over every block, so the prepared set is cut in ``n`` equal ranges and
    each worker separates its own sides. A time split does not (entity rows often arrive in time order), so
    its two sides are filtered apart first and each is cut in ``n``. Waited for here, before the workers'
    CPUs are reserved: a conversion task still queued when the reservation takes every core would never run.
    """
    import ray

    if data.split != "time":
        val_bounds = data.val_bounds if data.has_validation else None
        shards = [Shard(refs, data.train_bounds, refs, val_bounds) for refs in _even(data.prepared, n)]
    else:
        sides = []
        for bounds in (data.train_bounds, data.val_bounds):
            side = data.prepared.map_batches(_keep, batch_format="pandas", batch_size=None, fn_kwargs={"bounds": bounds})  # type: ignore[arg-type]  # Ray stubs cannot type fn_kwargs functions
            sides.append(_even(side.materialize(), n))
        everything = (None, None)
        shards = [Shard(train, everything, val, everything) for train, val in zip(sides[0], sides[1], strict=True)]
    every = [ref for shard in shards for ref in {id(r): r for r in (*shard.train, *shard.val)}.values()]
    ray.wait(every, num_returns=len(every), fetch_local=False)
    return shards


def _checkpoint_uri(settings: Settings, job_id: str, trial_id: str) -> str:
    return _root(settings, job_id) + f"/checkpoints/{trial_id}/booster"


def _root(settings: Settings, job_id: str) -> str:
    root = settings.asgard_train_storage_uri or settings.state_uri("training", "runs")
    return f"{root.rstrip('/')}/{job_id}"


def cleanup(settings: Settings, job_id: str) -> None:
    """Delete a job's checkpoints and worker markers (the best model is in MLflow by then)."""
    from asgard_ray.storage import delete_prefix

    try:
        delete_prefix(settings, _root(settings, job_id))
    except Exception:
        log.warning("job %s: could not delete its checkpoints under %s", job_id, _root(settings, job_id), exc_info=True)


def run_dp_trials(
    settings: Settings,
    data: ShardedData,
    spec: TrialSpec,
    configs: list[dict[str, Any]],
    *,
    job_id: str,
    num_workers: int,
    cpus_per_worker: float,
    callbacks: list[TrialCallback],
    name: str,
) -> tuple[TrialsOutcome, DataParallelFit | None]:
    """Fit each configuration data-parallel, one trial at a time, on one reserved gang of workers.

    Raises:
        ResourcesUnavailable: The workers' CPUs were not free within ``ASGARD_JOB_PENDING_TIMEOUT_S``.
    """
    from asgard_ray.runtime import reserve_cpus

    threads = max(1, int(cpus_per_worker))
    shards = _shards(data, num_workers)
    trials: list[TrialResult] = []
    best: TrialResult | None = None
    best_fit: DataParallelFit | None = None
    with reserve_cpus(
        settings, [cpus_per_worker] * num_workers, f"{name}: {num_workers} data-parallel workers", strategy="SPREAD"
    ) as group:
        for index, config in enumerate(configs):
            trial = Trial(f"{name}_{index:05d}", config)
            notify(callbacks, "on_trial_start", trial)
            params, rounds = booster_params(spec, {**spec.fixed_params, **config}, threads)
            job = {
                "settings": settings,
                "name": f"{name}:trial-{index}",
                "trial_id": trial.trial_id,
                "framework": spec.framework,
                "model_type": spec.model_type,
                "n_classes": spec.n_classes,
                "params": params,
                "rounds": rounds,
                "feature_columns": list(data.feature_columns),
                "checkpoint_s": settings.asgard_train_checkpoint_s,
                "checkpoint": _checkpoint_uri(settings, job_id, trial.trial_id),
                "root": _root(settings, job_id),
                "resume": None,
                "train_sample": max(1, TRAIN_METRIC_ROWS // num_workers),
            }
            try:
                outs = _with_restarts(settings, group, job, shards, cpus_per_worker)
            except Exception as exc:
                result = TrialResult(trial.trial_id, config, error=error_text(exc))
                trials.append(result)
                notify(callbacks, "on_trial_error", trial, result.error)
                continue
            y_eval, y_train = _gather(outs, "eval_label"), _gather(outs, "train_label")
            proba = _gather(outs, "eval_proba") if spec.model_type == "classification" else None
            train_proba = _gather(outs, "train_proba") if spec.model_type == "classification" else None
            metrics = _metrics(spec, y_train, _gather(outs, "train_pred"), train_proba, prefix="train_")
            if data.has_validation:
                metrics.update(_metrics(spec, y_eval, _gather(outs, "eval_pred"), proba))
            result = TrialResult(trial.trial_id, config, metrics)
            trials.append(result)
            notify(callbacks, "on_trial_result", trial, {**metrics, "num_workers": num_workers})
            if beats(result, best, spec.metric, spec.mode):
                workers = [{k: o[k] for k in ("rank", "node_id", "pid", "rows", "resumed_from")} for o in outs]
                if data.has_validation:
                    fit = DataParallelFit(outs[0]["raw"], y_eval, _gather(outs, "eval_pred"), proba, workers)
                else:  # no validation set: the training sample scores the model
                    fit = DataParallelFit(outs[0]["raw"], y_train, _gather(outs, "train_pred"), train_proba, workers)
                best, best_fit = result, fit
    return TrialsOutcome(trials, best), best_fit


def _with_restarts(settings: Settings, group: Any, job: dict[str, Any], shards: Any, cpus: float) -> list[dict[str, Any]]:
    """One trial's gang, started again from its last checkpoint after a worker dies (``ASGARD_TRAIN_MAX_FAILURES``)."""
    from asgard_ray.storage import exists

    failures = 0
    while True:
        try:
            return _gang(settings, group, job, shards, cpus)
        except _WorkerLost as exc:
            failures += 1
            if failures > settings.asgard_train_max_failures:
                raise RuntimeError(f"a data-parallel worker died {failures} time(s) (ASGARD_TRAIN_MAX_FAILURES); last: {exc}") from exc
            job = {**job, "resume": job["checkpoint"] if exists(settings, job["checkpoint"]) else None}
            log.warning(
                "%s: a worker died (%s); starting the gang again (%d of %d) from %s",
                job["name"],
                exc,
                failures,
                settings.asgard_train_max_failures,
                job["resume"] or "the start",
            )
