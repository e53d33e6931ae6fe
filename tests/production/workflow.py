"""The seed's five steps over HTTP, timed: register features, train, register, batch score, monitor.

The production tier runs it once per session against the production-local stack (``conftest.py``);
run as a script it times the same steps against any running stack, e.g. the embedded one::

    .venv/bin/python -m tests.production.workflow --api http://127.0.0.1:8000

and prints one JSON line ``SEED_TIMINGS {...}`` (seconds per step), so both profiles are measured
with the very same requests.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from asgard_ray.features.specs import SEED_EXAMPLE

__all__ = ["SeedRun", "call", "run_seed", "train_body"]


def call(api: httpx.Client, method: str, path: str, body: dict[str, Any] | None = None, ok: tuple[int, ...] = (200, 201)) -> dict[str, Any]:
    """One API call; anything but an expected status fails with the answer's text."""
    r = api.request(method, path, json=body)
    assert r.status_code in ok, f"{method} {path} -> {r.status_code}: {r.text[:3000]}"
    return r.json()


def train_body(model: str, n: int) -> dict[str, Any]:
    """The seed's training request on ``n`` customers, with a small search (two trials)."""
    return {
        "experiment_name": f"{model}_experiment",
        "model_name": model,
        "framework": "sklearn",
        "model_type": "classification",
        "data_source": {
            "feature_views": ["customer_features"],
            "entities": {"customer_id": list(range(1, n + 1))},
            "target_column": "churned",
        },
        "hyperparameters": {
            "params": {"n_estimators": 50, "random_state": 42},
            "search_space": {"max_depth": {"type": "choice", "values": [4, 8]}},
            "num_trials": 2,
            "metric": "roc_auc",
            "mode": "max",
        },
    }


@dataclass
class SeedRun:
    """What one run of the five steps made, and how long each step took (seconds)."""

    model: str
    run_id: str = ""
    version: str = ""
    batch_job_id: str = ""
    output_path: str = ""
    drift: dict[str, Any] = field(default_factory=dict)
    manual_alerts: list[str] = field(default_factory=list)
    history_total: int = 0
    timings: dict[str, float] = field(default_factory=dict)


def run_seed(api: httpx.Client, model: str, n: int = 1000, output_path: str = "s3://my-bucket/production/predictions") -> SeedRun:
    """Run the five steps (plus the ``champion`` alias) and return ids and per-step timings."""
    out = SeedRun(model=model)

    def timed(step: str, fn: Any) -> Any:
        t0 = time.perf_counter()
        result = fn()
        out.timings[step] = round(time.perf_counter() - t0, 3)
        return result

    timed("1_register_features", lambda: call(api, "POST", "/feast/features", SEED_EXAMPLE))
    trained = timed("2_train", lambda: call(api, "POST", "/mlops/models", train_body(model, n)))
    out.run_id = trained["run_id"]
    reg = timed("3_register", lambda: call(api, "POST", "/mlops/registry", {"model_name": model, "run_id": out.run_id}))
    out.version = str(reg["version"])
    call(api, "PUT", f"/mlops/registry/{model}/aliases/champion", {"version": out.version})
    batch = timed(
        "4_batch_score",
        lambda: call(
            api,
            "POST",
            "/mlops/serve/batch",
            {
                "model_name": model,
                "model_version": out.version,
                "feature_views": ["customer_features"],
                "entities_df": {"customer_id": list(range(1, n + 1))},
                "output_path": output_path,
                "overwrite": True,
            },
        ),
    )
    assert batch["status"] == "completed", batch
    out.batch_job_id, out.output_path = batch["job_id"], batch.get("output_path", output_path)
    out.drift = timed(
        "5_monitor_compute", lambda: call(api, "POST", "/mlops/monitoring/compute", {"job_id": out.batch_job_id, "wait_s": 300})
    )
    manual = call(
        api,
        "POST",
        "/mlops/monitoring",
        {
            "model_name": model,
            "model_version": out.version,
            "metric_type": "prediction_drift",
            "metrics": {"drift_score": 0.15, "psi": 0.08, "js_divergence": 0.12},
        },
    )
    out.manual_alerts = list(manual.get("alerts") or [])
    hist = call(api, "POST", "/mlops/monitoring/history", {"model_name": model, "limit": 100})
    out.history_total = int(hist.get("total", len(hist.get("records", []))))
    out.timings["total"] = round(sum(v for k, v in out.timings.items() if k != "total"), 3)
    return out


def main(argv: list[str] | None = None) -> None:
    """Time the five steps against a running stack."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--api", required=True, help="the control API's base URL")
    parser.add_argument("--model", default="seed_timing")
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--output-path", default="s3://my-bucket/seed-timing/predictions")
    args = parser.parse_args(argv)
    with httpx.Client(base_url=args.api, timeout=900) as api:
        run = run_seed(api, args.model, args.rows, args.output_path)
    print("SEED_TIMINGS " + json.dumps(run.timings))  # noqa: T201 - a script's answer


if __name__ == "__main__":
    main()
