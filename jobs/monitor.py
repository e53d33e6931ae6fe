"""``ray job submit -- python jobs/monitor.py --job-id batch-...``: compute drift of a batch scoring output.

Compares a batch scoring job's output (``--job-id``, or ``--output-path``) with the training reference
profile and stores the results as monitoring records with alerts; ``--request`` takes the
``POST /mlops/monitoring/compute`` body instead; ``--drift-job-id`` names this job.
"""

import sys
from typing import Any

OPTIONS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("--job-id",), {"help": "batch scoring job id (its manifest gives the output path)"}),
    (("--output-path",), {"help": "batch scoring output folder holding _manifest.json"}),
    (("--label-table",), {"help": "gold table with labels (default: the feature view's source)"}),
    (("--label-column",), {"help": "label column (default: the training run's label)"}),
    (("--sample-size",), {"type": int, "default": 20_000, "help": "rows sampled for KS and Wasserstein"}),
    (("--no-report",), {"action": "store_true", "help": "do not log the drift report to MLflow"}),
]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from asgard_ray.entrypoints import run_entrypoint
    from asgard_ray.monitoring import ComputeRequest
    from asgard_ray.monitoring.compute import DRIFT_JOB

    def body(a: Any) -> dict[str, Any]:
        keep = ("job_id", "output_path", "label_table", "label_column", "sample_size")
        return {**{k: getattr(a, k) for k in keep}, "log_report": not a.no_report}

    return run_entrypoint(DRIFT_JOB, ComputeRequest, argv, __doc__, options=OPTIONS, body=body, id_flag="--drift-job-id")


if __name__ == "__main__":
    main(sys.argv[1:])
