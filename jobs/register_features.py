"""``ray job submit --working-dir . -- python jobs/register_features.py --request spec.json``: register a feature view.

Same body as ``POST /feast/features`` (a file, or inline JSON); prints the registered view as one JSON line.
"""

import sys
from typing import Any


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from asgard_ray.config import Settings
    from asgard_ray.entrypoints import run_call
    from asgard_ray.features import FeatureRegistry, FeatureViewSpec

    return run_call(FeatureViewSpec, lambda spec: FeatureRegistry(Settings()).register(spec), argv, __doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
