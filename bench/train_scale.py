"""Benchmark: training time and peak driver memory, in-memory trials vs data-parallel Ray Train, as rows grow.

For each row count (default 1M, 4M, 8M) and each mode, one subprocess (one framework per process:
OpenMP runtimes of xgboost and LightGBM slow each other down) starts its own local Ray and trains
one trial on the same synthetic Parquet data (``--features`` float features, a learnable binary label,
an entity id and a timestamp):

* ``in_memory``: the driver reads the rows into one pandas frame (what Feast's ``to_df`` gives the
  in-memory mode), splits it, and runs ``trials.run_trials`` (Tune function trainable);
* ``distributed``: ``ray.data.read_parquet`` -> the data-parallel preparation and hash split of
  ``training.dataset`` -> ``training.distributed.run_dp_trials`` (Ray Train, ``--workers`` workers).

A thread samples the driver's RSS (psutil) every 50 ms; the table shows wall time, peak driver RSS
above its baseline at the start, and the held-out ROC AUC, with the ratio distributed/in-memory.

    .venv/bin/python bench/train_scale.py --framework xgboost --rows 1000000 4000000 8000000
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PARAMS = {"n_estimators": 50, "max_depth": 6, "learning_rate": 0.2, "random_state": 0}


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


class RssSampler:
    """Peak RSS of this process, sampled on a thread."""

    def __init__(self, every_s: float = 0.05) -> None:
        import psutil

        self.proc = psutil.Process()
        self.base = self.peak = self.proc.memory_info().rss
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self._stop.wait(self.every_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def _in_memory(folder: Path, features: list[str], framework: str) -> float:
    import pandas as pd

    from asgard_ray.features import TrainingFrame
    from asgard_ray.training.data import prepare_data
    from asgard_ray.training.schemas import SplitSpec
    from asgard_ray.training.trials import TrialSpec, run_trials

    df = pd.read_parquet(folder)
    frame = TrainingFrame(df=df, join_keys=["customer_id"], feature_columns=features, feature_views=["bench"], label="churned")
    data = prepare_data(frame, "classification", SplitSpec(strategy="random"))
    del df, frame
    spec = TrialSpec(framework, "classification", None, dict(PARAMS), "roc_auc", "max", 2)
    outcome = run_trials(data, spec, num_samples=1, name="bench-in-memory")
    assert outcome.best is not None, [t.error for t in outcome.trials]
    return outcome.best.metrics["roc_auc"]


def _distributed(folder: Path, features: list[str], framework: str, workers: int, settings: object) -> float:
    import ray.data

    from asgard_ray.features import TrainingFrame
    from asgard_ray.training.dataset import ShardedData, _apply_split, _prepare
    from asgard_ray.training.distributed import run_dp_trials
    from asgard_ray.training.trials import TrialSpec

    raw = ray.data.read_parquet(str(folder))
    prepared = raw.map_batches(
        _prepare,
        batch_format="pandas",
        fn_kwargs={
            "feature_columns": features,
            "label": "churned",
            "classes": [0, 1],
            "keys": ["customer_id"],
            "ts": "event_timestamp",
            "seed": 42,
            "by_time": False,
        },
    ).materialize()
    train, val = _apply_split(prepared, (0.2, None), (None, 0.2))
    meta = TrainingFrame(df=None, join_keys=["customer_id"], feature_columns=features, feature_views=["bench"], label="churned")  # type: ignore[arg-type]
    data = ShardedData(settings, train, val, features, "classification", [0, 1], "hash", train.count(), val.count(), meta)  # type: ignore[arg-type]
    spec = TrialSpec(framework, "classification", None, dict(PARAMS), "roc_auc", "max", 2)
    outcome = run_dp_trials(data, spec, None, job_id="bench", num_workers=workers, num_samples=1, max_concurrent_trials=1, callbacks=[])
    assert outcome.best is not None, [t.error for t in outcome.trials]
    return outcome.best.metrics["roc_auc"]


def run_case(args: argparse.Namespace) -> dict[str, object]:
    """One (mode, rows) case in this process: start Ray, train, measure."""
    from asgard_ray.config import Settings
    from asgard_ray.runtime import prepare_auth

    home = Path(tempfile.mkdtemp(prefix="asgard-bench-"))
    settings = Settings(
        asgard_home=home,
        asgard_local_root=home,
        asgard_train_storage_uri=str(home / "runs"),
        asgard_train_cpus_per_worker=args.cpus_per_worker,
        asgard_train_checkpoint_rounds=25,
    )
    prepare_auth(settings, create=True)  # its own token, before Ray is imported
    import ray

    features = [f"f{i:02d}" for i in range(args.features)]
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        with RssSampler() as rss:
            start = time.perf_counter()
            if args.mode == "in_memory":
                auc = _in_memory(Path(args.data), features, args.framework)
            else:
                auc = _distributed(Path(args.data), features, args.framework, args.workers, settings)
            seconds = time.perf_counter() - start
    finally:
        ray.shutdown()
    return {
        "mode": args.mode,
        "rows": args.case_rows,
        "seconds": round(seconds, 1),
        "peak_driver_mb": round((rss.peak - rss.base) / 2**20),
        "roc_auc": round(auc, 4),
    }


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    """Write the data per row count, run every case in a subprocess, print the table and ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--framework", choices=["xgboost", "lightgbm"], default="xgboost")
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000, 8_000_000])
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--cpus-per-worker", type=float, default=0.5)
    parser.add_argument("--case", choices=["in_memory", "distributed"], help=argparse.SUPPRESS, dest="mode")
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--case-rows", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.mode:
        print(json.dumps(run_case(args)))
        return []

    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="asgard-train-scale-") as tmp:
        for rows in args.rows:
            folder = Path(tmp) / f"rows-{rows}"
            write_data(folder, rows, args.features)
            for mode in ("in_memory", "distributed"):
                cmd = [
                    sys.executable,
                    __file__,
                    "--case",
                    mode,
                    "--data",
                    str(folder),
                    "--case-rows",
                    str(rows),
                    "--framework",
                    args.framework,
                    "--features",
                    str(args.features),
                    "--workers",
                    str(args.workers),
                    "--num-cpus",
                    str(args.num_cpus),
                    "--cpus-per-worker",
                    str(args.cpus_per_worker),
                ]
                out = subprocess.run(cmd, capture_output=True, text=True, check=False)
                lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
                if out.returncode != 0 or not lines:
                    results.append({"mode": mode, "rows": rows, "error": (out.stderr or out.stdout)[-400:]})
                else:
                    results.append(json.loads(lines[-1]))
                print(json.dumps(results[-1]), flush=True)
    print(f"\n{args.framework}, {args.features} features, {args.workers} workers x {args.cpus_per_worker} CPU, {args.num_cpus} CPUs")
    print(f"{'rows':>10} {'mode':>12} {'seconds':>8} {'peak driver MB':>15} {'roc_auc':>8}")
    for r in results:
        print(
            f"{r['rows']:>10,} {r['mode']:>12} {r.get('seconds', 'error')!s:>8} {r.get('peak_driver_mb', '')!s:>15} "
            f"{r.get('roc_auc', '')!s:>8}"
        )
    for rows in args.rows:
        pair = {r["mode"]: r for r in results if r["rows"] == rows and "seconds" in r}
        if len(pair) == 2:
            mem, dp = pair["in_memory"], pair["distributed"]
            print(
                f"{rows:,} rows: time distributed/in-memory {float(dp['seconds']) / float(mem['seconds']):.2f}, "
                f"peak driver memory distributed/in-memory "
                f"{float(dp['peak_driver_mb']) / max(float(mem['peak_driver_mb']), 1.0):.2f}"
            )
    return results


if __name__ == "__main__":
    main()
