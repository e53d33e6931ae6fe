"""``ray job submit --working-dir . -- python jobs/train.py --request request.json``: one training job.

Same body as ``POST /mlops/models`` (a file, or inline JSON); ``--job-id`` names the job.
"""

import sys
from typing import Any


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from asgard_ray.entrypoints import run_entrypoint
    from asgard_ray.training.schemas import TrainRequest
    from asgard_ray.training.service import TRAINING_JOB

    return run_entrypoint(TRAINING_JOB, TrainRequest, argv, __doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
