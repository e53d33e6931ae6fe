"""Benchmark: the platform's training against the native library, in memory and data-parallel, as rows grow.

For each row count and each case, one subprocess (one framework per process: the OpenMP runtimes
of xgboost and LightGBM slow each other down) trains on the same synthetic data (``--features``
float features, a learnable binary label, an entity id and a timestamp), split the same way (the
platform's seeded entity-hash split, 20% validation):

* ``native``: ``xgboost.train`` / ``lightgbm.train`` (or the sklearn fit) on the training arrays,
  with every core, timed from the arrays to the fitted model (the data matrix is part of it);
* ``in_memory``: the platform's in-memory pipeline, ``training.pipeline.train_on_frame``, from the
  retrieved frame to the model, metrics, figures and reference profile logged in MLflow (a real
  ``mlflow server`` with artifacts on a local S3 server); one trial, no HTTP;
* ``distributed``: the data-parallel pipeline, ``prepare_dataset`` + ``train_on_dataset``, from the
  rows as Ray Data blocks to the same logged model, on ``--workers`` workers.

Each case first runs once unmeasured on 20,000 rows (Ray's workers import the framework once, as on
a running platform). A thread samples the driver's RSS every 50 ms. The table gives wall time, peak
driver memory above its start and the held-out ROC AUC, then the targets of issue 24:

* T1: in-memory / native <= 1.3 at 1M rows;
* T2: data-parallel / in-memory <= 1.5 at 1M rows, with the same held-out AUC to 3 decimals; at the
  largest size, data-parallel driver memory <= 200 MB and data-parallel / native <= 1.5.

    .venv/bin/python bench/train_scale.py --framework xgboost --rows 1000000 8000000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchkit import REPO, RssSampler, start_stack, verdict  # noqa: E402

PARAMS = {"n_estimators": 50, "max_depth": 6, "learning_rate": 0.2, "random_state": 0}
SKLEARN_PARAMS = {"n_estimators": 50, "max_depth": 12, "random_state": 0}
CASES = ("native", "in_memory", "distributed")


def write_data(folder: Path, rows: int, features: int, files: int = 16, seed: int = 0) -> None:
    """Synthetic Parquet training data, written in ``files`` parts (never all in memory at once)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    weights = rng.normal(size=features)
    folder.mkdir(parents=True, exist_ok=True)
    per = -(-rows // files)
    for part in range(files):
        n = min(per, rows - part * per)
        if n <= 0:
            break
        X = rng.normal(size=(n, features))
        y = (X @ weights + rng.normal(scale=2.0, size=n) > 0).astype("int64")
        df = pd.DataFrame(X, columns=[f"f{i:02d}" for i in range(features)])
        df["customer_id"] = np.arange(part * per, part * per + n, dtype="int64")
        df["event_timestamp"] = pd.Timestamp("2024-01-01", tz="UTC")
        df["churned"] = y
        df.to_parquet(folder / f"part-{part:03d}.parquet", index=False)


def _request(framework: str, mode: str, workers: int) -> Any:
    from asgard_ray.training.schemas import TrainRequest

    params = SKLEARN_PARAMS if framework == "sklearn" else PARAMS
    return TrainRequest.model_validate(
        {
            "experiment_name": "bench-train-scale",
            "model_name": "bench_scale",
            "framework": framework,
            "model_type": "classification",
            "data_source": {"feature_views": ["bench"], "entities": {"customer_id": [0]}, "target_column": "churned"},
            "hyperparameters": {"params": params, "metric": "roc_auc"},
            "split": {"strategy": "random", "validation_fraction": 0.2, "seed": 42},
            "execution": {"mode": mode, **({"num_workers": workers} if mode == "distributed" else {})},
        }
    )


def _frame(df: Any, features: list[str]) -> Any:
    from asgard_ray.features import TrainingFrame

    dtypes = {f: "float64" for f in features}
    return TrainingFrame(
        df=df, join_keys=["customer_id"], feature_columns=features, feature_views=["bench"], label="churned", feature_dtypes=dtypes
    )


def _native(df: Any, features: list[str], framework: str, cpus: int) -> tuple[float, float]:
    """Seconds of the native fit on the platform's training rows, and its held-out AUC."""
    from sklearn.metrics import roc_auc_score

    from asgard_ray.training.data import prepare_data
    from asgard_ray.training.distributed import booster_params
    from asgard_ray.training.schemas import SplitSpec
    from asgard_ray.training.trials import TrialSpec

    data = prepare_data(_frame(df, features), "classification", SplitSpec(strategy="random", seed=42))
    X, y = data.X_train.to_numpy(dtype="float32"), data.y_train
    Xv, yv = data.X_val.to_numpy(dtype="float32"), data.y_val  # type: ignore[union-attr]
    if framework == "sklearn":
        from sklearn.ensemble import RandomForestClassifier

        start = time.perf_counter()
        model = RandomForestClassifier(**SKLEARN_PARAMS, n_jobs=cpus).fit(X, y)
        seconds = time.perf_counter() - start
        return seconds, float(roc_auc_score(yv, model.predict_proba(Xv)[:, 1]))
    spec = TrialSpec(framework, "classification", None, dict(PARAMS), "roc_auc", "max", 2)
    params, rounds = booster_params(spec, dict(PARAMS), cpus)
    if framework == "xgboost":
        import xgboost

        start = time.perf_counter()
        booster = xgboost.train(params, xgboost.QuantileDMatrix(X, label=y, nthread=cpus), num_boost_round=rounds)
        seconds = time.perf_counter() - start
        return seconds, float(roc_auc_score(yv, booster.predict(xgboost.DMatrix(Xv))))
    import lightgbm

    start = time.perf_counter()
    booster = lightgbm.train(params, lightgbm.Dataset(X, label=y), num_boost_round=rounds)
    seconds = time.perf_counter() - start
    return seconds, float(roc_auc_score(yv, booster.predict(Xv)))


def _platform(settings: Any, source: Any, features: list[str], mode: str, framework: str, workers: int) -> float:
    """The platform's pipeline on ``source`` (a frame, or a materialized Ray Dataset); its held-out AUC."""
    from asgard_ray.jobs import JobStore, new_job_id
    from asgard_ray.training.modes import ExecutionPlan
    from asgard_ray.training.pipeline import train_on_dataset, train_on_frame

    request = _request(framework, mode, workers)
    job_id = new_job_id("train")
    JobStore(settings).create("training", job_id, status="running")
    if mode == "in_memory":
        result = train_on_frame(settings, request, _frame(source, features), job_id)
    else:
        import pandas as pd

        from asgard_ray.training.dataset import prepare_dataset

        meta = _frame(pd.DataFrame({"customer_id": [], "event_timestamp": []}), features)
        data = prepare_dataset(settings, source, meta, request)
        result = train_on_dataset(settings, request, data, job_id, ExecutionPlan("distributed", data.train_rows, workers, None, "bench"))
    return float(result["metrics"]["metrics"]["roc_auc"])


STAGES = {
    "in_memory": ("pipeline.prepare_data", "pipeline.entity_hash", "pipeline._open_run", "pipeline.run_trials", "pipeline.log_winner"),
    "distributed": ("dataset.prepare_dataset", "pipeline._open_run", "distributed.run_dp_trials", "pipeline.log_winner"),
}
"""Functions of ``asgard_ray.training`` timed per case (``module.name``, looked up at call time): where a run's seconds go."""


class StageTimer:
    """Wrap the ``STAGES`` functions of a case and sum their wall time while ``on``."""

    def __init__(self, case: str) -> None:
        import importlib

        self.seconds: dict[str, float] = {}
        self.on = False
        for path in STAGES.get(case, ()):
            module_name, name = path.split(".")
            module = importlib.import_module(f"asgard_ray.training.{module_name}")
            setattr(module, name, self._wrap(name, getattr(module, name)))

    def _wrap(self, name: str, fn: Any) -> Any:
        def timed(*a: Any, **k: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                if self.on:
                    self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 2)

        return timed


def run_case(args: argparse.Namespace) -> dict[str, Any]:
    """One (case, rows) in this process: start what it needs, warm up on 20,000 rows, then measure."""
    import pandas as pd

    features = [f"f{i:02d}" for i in range(args.features)]
    folder, warm = Path(args.data), Path(args.data).parent / "warmup"
    if args.case == "native":
        df = pd.read_parquet(folder)
        _native(pd.read_parquet(warm), features, args.framework, args.num_cpus)
        seconds, auc = _native(df, features, args.framework, args.num_cpus)
        return {"case": "native", "rows": args.case_rows, "seconds": round(seconds, 2), "peak_driver_mb": None, "roc_auc": round(auc, 4)}
    settings = start_stack(args.num_cpus)
    settings = settings.model_copy(update={"asgard_train_cpus_per_worker": args.cpus_per_worker})
    import ray.data

    def load(path: Path) -> Any:
        return pd.read_parquet(path) if args.case == "in_memory" else ray.data.read_parquet(str(path)).materialize()

    stages = StageTimer(args.case)
    _platform(settings, load(warm), features, args.case, args.framework, args.workers)
    source = load(folder)
    stages.on = True
    with RssSampler() as rss:
        start = time.perf_counter()
        auc = _platform(settings, source, features, args.case, args.framework, args.workers)
        seconds = time.perf_counter() - start
    return {
        "case": args.case,
        "rows": args.case_rows,
        "seconds": round(seconds, 2),
        "peak_driver_mb": rss.mb,
        "roc_auc": round(auc, 4),
        "stages": stages.seconds,
    }


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    if not a or not b or "seconds" not in a or "seconds" not in b:
        return None
    return float(a["seconds"]) / max(float(b["seconds"]), 1e-9)


def summarise(results: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    """The table, the targets' verdicts and the crossover, as lines."""
    lines = [
        f"{args.framework}, {args.features} features, {args.num_cpus} CPUs; data-parallel: {args.workers} workers x "
        f"{args.cpus_per_worker:g} CPU; {time.strftime('%Y-%m-%d')}",
        f"{'rows':>11} {'case':>12} {'seconds':>8} {'driver MB':>10} {'roc_auc':>8}",
    ]
    for r in results:
        mb = "" if r.get("peak_driver_mb") is None else r["peak_driver_mb"]
        lines.append(f"{r['rows']:>11,} {r['case']:>12} {r.get('seconds', 'error')!s:>8} {mb!s:>10} {r.get('roc_auc', '')!s:>8}")
    for r in results:
        if r.get("stages"):
            parts = ", ".join(f"{k} {v:.2f}" for k, v in r["stages"].items())
            lines.append(f"{r['rows']:>11,} {r['case']:>12} seconds by stage: {parts}")
    by = {(r["rows"], r["case"]): r for r in results if "seconds" in r}
    crossover = None
    for rows in args.rows:
        native, mem, dp = by.get((rows, "native")), by.get((rows, "in_memory")), by.get((rows, "distributed"))
        t1, t2, t2n = _ratio(mem, native), _ratio(dp, mem), _ratio(dp, native)
        if t1 is not None:
            lines.append(f"{rows:,} rows: T1 in-memory / native = {t1:.2f} (target <= 1.3): {verdict(t1 <= 1.3)}")
        if t2 is not None and mem and dp:
            same = abs(float(mem["roc_auc"]) - float(dp["roc_auc"])) < 0.0005
            lines.append(
                f"{rows:,} rows: T2 data-parallel / in-memory = {t2:.2f} (target <= 1.5), AUC {dp['roc_auc']} vs {mem['roc_auc']} "
                f"({'same' if same else 'differs'} to 3 decimals): {verdict(t2 <= 1.5 and same)}"
            )
            if crossover is None and t2 <= 1.0:
                crossover = rows
        if t2n is not None and dp and rows == max(args.rows) and len(args.rows) > 1:
            mb = int(dp["peak_driver_mb"] or 0)
            lines.append(
                f"{rows:,} rows: data-parallel / native = {t2n:.2f} (target <= 1.5), driver {mb} MB (target <= 200): "
                f"{verdict(t2n <= 1.5 and mb <= 200)}"
            )
    if "distributed" in args.cases:
        lines.append(
            f"crossover: data-parallel is at least as fast as in-memory from {crossover:,} rows"
            if crossover
            else f"crossover: data-parallel stayed slower than in-memory up to {max(args.rows):,} rows"
        )
    return lines


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Write the data per row count, run every case in a subprocess, print the table and verdicts."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--framework", choices=["xgboost", "lightgbm", "sklearn"], default="xgboost")
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 8_000_000])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--cpus-per-worker", type=float, default=1.0)
    parser.add_argument("--json", default=None, help="also write the results and verdicts to this file")
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--case-rows", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.case:
        print(json.dumps(run_case(args)), flush=True)
        return []
    if args.framework == "sklearn" and "distributed" in args.cases:
        args.cases = [c for c in args.cases if c != "distributed"]  # sklearn has no data-parallel learner
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="asgard-train-scale-") as tmp:
        write_data(Path(tmp) / "warmup", 20_000, args.features, files=2, seed=1)
        for rows in args.rows:
            folder = Path(tmp) / f"rows-{rows}"
            write_data(folder, rows, args.features)
            for case in args.cases:
                cmd = [
                    sys.executable, __file__, "--case", case, "--data", str(folder), "--case-rows", str(rows),
                    "--framework", args.framework, "--features", str(args.features), "--workers", str(args.workers),
                    "--num-cpus", str(args.num_cpus), "--cpus-per-worker", str(args.cpus_per_worker),
                ]  # fmt: skip
                out = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=REPO)
                lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
                result = (
                    json.loads(lines[-1]) if out.returncode == 0 and lines else {"case": case, "rows": rows, "error": out.stderr[-600:]}
                )
                results.append(result)
                print(json.dumps(result), flush=True)
    summary = summarise(results, args)
    print("\n" + "\n".join(summary))
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "summary": summary}, indent=2))
    return results


if __name__ == "__main__":
    main()
