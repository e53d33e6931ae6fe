"""``ray job submit --working-dir . -- python jobs/batch_score.py --request request.json``: one scoring job.

Same body as ``POST /mlops/serve/batch``; ``--job-id`` (or the body's ``job_id``) names the job.
"""

import sys
from typing import Any


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from asgard_ray.entrypoints import run_entrypoint
    from asgard_ray.scoring import BatchScoreRequest
    from asgard_ray.scoring.service import SCORING_JOB

    return run_entrypoint(SCORING_JOB, BatchScoreRequest, argv, __doc__, id_from_body=True)


if __name__ == "__main__":
    main(sys.argv[1:])
