"""Register a feature view: ``ray job submit --working-dir . -- python jobs/register_features.py --request spec.json``.

The request is the seed's ``POST /feast/features`` body, as a file path or inline JSON.
Prints the registered view as JSON on the last line of output.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from asgard_ray.config import Settings
from asgard_ray.entrypoints import load_request
from asgard_ray.features import FeatureRegistry, FeatureViewSpec

log = logging.getLogger("asgard.jobs.register_features")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--request", required=True, help="path to a JSON file, or the JSON itself")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Register the feature view and print the result."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = parse_args(argv)
    spec = FeatureViewSpec.model_validate(load_request(args.request))
    result = FeatureRegistry(Settings()).register(spec)
    log.info("feature view %s: %s (registry %s)", result.name, result.status, result.registry_version)
    out = result.model_dump(mode="json")
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
