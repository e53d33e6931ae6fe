"""Benchmark: 8 trials through the platform's trial runner (Ray tasks in a placement group) vs the same 8 fits in a loop.

Same data (default 50,000 rows x 20 features, 80/20 split), same fit-and-score function, one thread
per fit in both (the runner fits ``--num-cpus`` trials at once, one CPU each). The sequential loop
runs first, before Ray starts, so it has the machine to itself. The runner runs once unmeasured on
the same configurations first (its worker processes import the framework once, as on a running
platform). Prints both wall times, the ratio runner/sequential (target: <= 0.6 on 2 cores) and
whether both found the same best metric, with a met / NOT met verdict.

    .venv/bin/python bench/tune_trials.py --framework sklearn
    .venv/bin/python bench/tune_trials.py --framework xgboost
    .venv/bin/python bench/tune_trials.py --framework lightgbm

Run one framework per process: OpenMP runtimes of xgboost and LightGBM slow each other down in one
process.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchkit import verdict  # noqa: E402

from asgard_ray.training.data import PreparedData  # noqa: E402
from asgard_ray.training.trials import TrialSpec, fit_and_score, run_trials  # noqa: E402

# Eight configurations per framework: one tuned parameter on a grid, the rest fixed.
GRIDS = {
    "sklearn": ({"n_estimators": 30, "random_state": 0}, "max_depth", [6, 7, 8, 9, 10, 11, 12, 13]),
    "xgboost": (
        {"n_estimators": 120, "learning_rate": 0.1, "tree_method": "hist", "random_state": 0},
        "max_depth",
        [3, 4, 5, 6, 7, 8, 9, 10],
    ),
    "lightgbm": ({"n_estimators": 150, "learning_rate": 0.1, "random_state": 0}, "num_leaves", [15, 23, 31, 47, 63, 95, 127, 191]),
}


def make_data(rows: int, features: int, seed: int = 0) -> PreparedData:
    """A learnable binary problem, split 80/20."""
    import pandas as pd
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=rows, n_features=features, n_informative=features // 2, random_state=seed)
    cols = [f"f{i:02d}" for i in range(features)]
    frame = pd.DataFrame(X, columns=cols)
    cut = int(rows * 0.8)
    return PreparedData(
        X_train=frame.iloc[:cut].reset_index(drop=True),
        y_train=y[:cut],
        X_val=frame.iloc[cut:].reset_index(drop=True),
        y_val=y[cut:],
        feature_columns=cols,
        model_type="classification",
        classes=[0, 1],
        split="random",
    )


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the benchmark and print the result."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--framework", choices=sorted(GRIDS), default="sklearn")
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs the local Ray offers (the trials run this many at once)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    fixed, name, values = GRIDS[args.framework]
    values = (values * ((args.trials + len(values) - 1) // len(values)))[: args.trials]
    data = make_data(args.rows, args.features)
    spec = TrialSpec(args.framework, "classification", None, fixed, "roc_auc", "max", 2)

    start = time.perf_counter()
    sequential_scores = [fit_and_score(spec, data, {**fixed, name: v})[1]["roc_auc"] for v in values]
    sequential_s = time.perf_counter() - start

    import tempfile

    import ray

    from asgard_ray.config import Settings
    from asgard_ray.runtime import prepare_auth

    settings = Settings(asgard_home=tempfile.mkdtemp(prefix="asgard-bench-"))
    prepare_auth(settings, create=True)  # its own token
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    configs = [{name: v} for v in values]
    try:
        run_trials(settings, data, spec, configs, concurrency=args.num_cpus, cpus=1, name="bench-warmup")
        start = time.perf_counter()
        outcome, _ = run_trials(settings, data, spec, configs, concurrency=args.num_cpus, cpus=1, name="bench")
        tune_s = time.perf_counter() - start
    finally:
        ray.shutdown()
    assert not outcome.failed and len(outcome.trials) == len(values), "every trial must finish"
    best_tune = outcome.best.metrics["roc_auc"] if outcome.best else float("nan")
    result = {
        "framework": args.framework,
        "rows": args.rows,
        "features": args.features,
        "trials": len(values),
        "num_cpus": args.num_cpus,
        "sequential_s": round(sequential_s, 2),
        "tune_s": round(tune_s, 2),
        "ratio": round(tune_s / sequential_s, 3),
        "best_roc_auc_sequential": round(max(sequential_scores), 4),
        "best_roc_auc_tune": round(best_tune, 4),
    }
    same = result["best_roc_auc_sequential"] == result["best_roc_auc_tune"]
    print(
        f"{args.framework}: {len(values)} fits sequential {sequential_s:.1f} s, trials on Ray {tune_s:.1f} s; "
        f"T3 ratio {result['ratio']:.2f} (target <= 0.6), best ROC AUC {result['best_roc_auc_tune']} vs "
        f"{result['best_roc_auc_sequential']} ({'same' if same else 'differs'}): {verdict(result['ratio'] <= 0.6 and same)}"
    )
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
