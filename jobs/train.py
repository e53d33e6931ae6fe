"""``ray job submit --working-dir . -- python jobs/train.py --request request.json``: one training job.

Takes the same body as ``POST /mlops/models`` (a file, or inline JSON), runs it in this driver
with a tracked job record (the Tune trials fan out over the cluster, the MLflow runs go to the
tracking server) and prints the result JSON, the same as the HTTP answer.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

log = logging.getLogger("asgard.jobs.train")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--request", required=True, help="request body: a JSON file path, or the JSON itself")
    parser.add_argument("--job-id", default=None, help="job id to use; default a new train-<hex> id")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train once and return (and print) the result."""
    from asgard_ray.config import Settings
    from asgard_ray.entrypoints import load_request
    from asgard_ray.jobs import JobStore, new_job_id, run_tracked
    from asgard_ray.runtime import connect
    from asgard_ray.training.pipeline import plan_trials, run_training, validate_request
    from asgard_ray.training.schemas import TrainRequest

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    request = TrainRequest.model_validate(load_request(args.request))
    validate_request(request)
    settings = Settings()
    connect(settings)
    job_id = args.job_id or new_job_id("train")
    body = request.model_dump(mode="json", by_alias=True)
    JobStore(settings).create("training", job_id, request=body, progress={"trials_total": plan_trials(request)[1]},
                              ray_task_name="ray job (jobs/train.py)", links={"dashboard": settings.dashboard_url})
    result = run_tracked(settings, "training", job_id, run_training, settings, body, job_id)
    log.info("job %s: run %s, %d trial(s)", job_id, result["run_id"], result["num_trials"])
    print(json.dumps(result, default=str))  # one line, last: easy to pick out of the job logs
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
