"""``ray job submit -- python jobs/monitor.py --job-id batch-...``: compute drift of a batch scoring output.

Compares the output of a batch scoring job (by its job id or its output path) with the training
reference profile, stores the results as monitoring records (with alerts) through the monitoring
actor, logs the drift report to MLflow, and prints the result.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

log = logging.getLogger("asgard.jobs.monitor")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--job-id", help="batch scoring job id (its manifest gives the output path)")
    source.add_argument("--output-path", help="batch scoring output folder holding _manifest.json")
    parser.add_argument("--label-table", default=None, help="gold table with labels (default: the feature view's source)")
    parser.add_argument("--label-column", default=None, help="label column (default: the training run's label)")
    parser.add_argument("--sample-size", type=int, default=20_000, help="rows sampled for KS and Wasserstein")
    parser.add_argument("--no-report", action="store_true", help="do not log the drift report to MLflow")
    parser.add_argument("--drift-job-id", default=None, help="id of this drift job (re-running it is idempotent)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Run one drift computation as a tracked job and return its result."""
    from asgard_ray.config import Settings
    from asgard_ray.jobs import JobStore, new_job_id, run_tracked
    from asgard_ray.monitoring import ComputeRequest, compute_drift
    from asgard_ray.runtime import connect

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    request = ComputeRequest(job_id=args.job_id, output_path=args.output_path, label_table=args.label_table,
                             label_column=args.label_column, sample_size=args.sample_size, log_report=not args.no_report)
    settings = Settings()
    connect(settings)
    job_id = args.drift_job_id or new_job_id("drift")
    store = JobStore(settings)
    if not store.exists("monitoring", job_id):
        store.create("monitoring", job_id, request=request.model_dump(mode="json"), ray_task_name="ray job (jobs/monitor.py)")
    result = run_tracked(settings, "monitoring", job_id, compute_drift, settings, request, job_id)
    log.info("drift job %s: %d rows, %d alerts", job_id, result["rows"], len(result["alerts"]))
    print(json.dumps(result, default=str))  # one line, last: easy to pick out of the job logs
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
