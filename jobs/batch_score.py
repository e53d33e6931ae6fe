"""``ray job submit -- python jobs/batch_score.py --request body.json``: one batch-scoring job.

Takes the same body as ``POST /mlops/serve/batch`` (a file, or inline JSON), validates it, runs the
job in this driver (its Ray Data work fans out over the cluster) with a tracked job record, and
prints the result. ``--job-id`` re-runs (or resumes after a crash) a job without duplicating output.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

log = logging.getLogger("asgard.jobs.batch_score")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--request", required=True, help="request body: a JSON file path, or the JSON itself")
    parser.add_argument("--job-id", default=None, help="job id to (re)use; default the body's job_id or a new one")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Run one scoring job and return its result."""
    from asgard_ray.config import Settings
    from asgard_ray.entrypoints import load_request
    from asgard_ray.jobs import JobStore, new_job_id, run_tracked
    from asgard_ray.runtime import connect
    from asgard_ray.scoring import BatchScoreRequest, prepare_plan, run_scoring

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    request = BatchScoreRequest.model_validate(load_request(args.request))
    settings = Settings()
    connect(settings)
    job_id = args.job_id or request.job_id or new_job_id("batch")
    plan = prepare_plan(settings, request, job_id)
    store = JobStore(settings)
    store.create(
        "batch_scoring", job_id, request=request.model_dump(mode="json", by_alias=True, exclude={"entities_df"}),
        progress={"rows_total": plan.rows_total, "rows_done": 0, "model_version": plan.model.version, "output_path": plan.output_path},
        ray_task_name="ray job (jobs/batch_score.py)",
    )
    result = run_tracked(settings, "batch_scoring", job_id, run_scoring, settings, plan)
    log.info("job %s scored %d rows into %s", job_id, result["total_rows"], result["output_path"])
    print(json.dumps(result, default=str))  # one line, last: easy to pick out of the job logs
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
