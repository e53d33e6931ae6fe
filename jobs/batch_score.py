"""``ray job submit -- python jobs/batch_score.py --request body.json``: one batch-scoring job.

Same body as ``POST /mlops/serve/batch``; runs through the jobs core (the task
``batch_scoring:<job_id>``) and prints the result as one JSON line, last. ``--job-id`` re-runs a
failed job without duplicating output, or answers a completed one from its record.
"""

import argparse
import json
import logging
import sys
from typing import Any


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run one scoring job and return (and print) its result."""
    from asgard_ray.entrypoints import load_request
    from asgard_ray.jobs import run_job
    from asgard_ray.scoring import BatchScoreRequest

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--request", required=True, help="request body: a JSON file path, or the JSON itself")
    parser.add_argument("--job-id", default=None, help="job id to (re)use; default the body's job_id or a new one")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    request = BatchScoreRequest.model_validate(load_request(args.request))
    result = run_job("batch_scoring", request, args.job_id or request.job_id)
    print(json.dumps(result, default=str))  # one line, last: easy to pick out of the job logs
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
