"""``ray job submit --working-dir . -- python jobs/train.py --request request.json``: one training job.

Same body as ``POST /mlops/models`` (a file, or inline JSON); runs through the jobs core (the
task ``training:<job_id>``) and prints the result as one JSON line, last.
"""

import argparse
import json
import logging
import sys
from typing import Any


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train once and return (and print) the result."""
    from asgard_ray.entrypoints import load_request
    from asgard_ray.jobs import run_job
    from asgard_ray.training.schemas import TrainRequest

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--request", required=True, help="request body: a JSON file path, or the JSON itself")
    parser.add_argument("--job-id", default=None, help="job id to use; default a new train-<hex> id")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = run_job("training", TrainRequest.model_validate(load_request(args.request)), args.job_id)
    print(json.dumps(result, default=str))  # one line, last: easy to pick out of the job logs
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
