"""``ray job submit -- python jobs/monitor.py --job-id batch-...``: compute drift of a batch scoring output.

Compares a batch scoring job's output (by job id or output path) with the training reference
profile, stores the results as monitoring records (with alerts) through the monitoring actor, and
prints the result as one JSON line, last. Runs through the jobs core (task ``monitoring:<id>``).
"""

import argparse
import json
import logging
import sys
from typing import Any


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run one drift computation and return (and print) its result."""
    from asgard_ray.jobs import run_job
    from asgard_ray.monitoring import ComputeRequest

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--job-id", help="batch scoring job id (its manifest gives the output path)")
    source.add_argument("--output-path", help="batch scoring output folder holding _manifest.json")
    parser.add_argument("--label-table", default=None, help="gold table with labels (default: the feature view's source)")
    parser.add_argument("--label-column", default=None, help="label column (default: the training run's label)")
    parser.add_argument("--sample-size", type=int, default=20_000, help="rows sampled for KS and Wasserstein")
    parser.add_argument("--no-report", action="store_true", help="do not log the drift report to MLflow")
    parser.add_argument("--drift-job-id", default=None, help="id of this drift job (a completed one is answered as it is)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    request = ComputeRequest(
        job_id=args.job_id,
        output_path=args.output_path,
        label_table=args.label_table,
        label_column=args.label_column,
        sample_size=args.sample_size,
        log_report=not args.no_report,
    )
    result = run_job("monitoring", request, args.drift_job_id)
    print(json.dumps(result, default=str))  # one line, last: easy to pick out of the job logs
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
