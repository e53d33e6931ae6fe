"""Materialize feature views into the online store: ``ray job submit --working-dir . -- python jobs/materialize.py``.

Options: ``--feature-view NAME`` (repeatable; default every registered view), ``--start`` and
``--end`` (ISO-8601 event times; default everything up to now), or ``--request`` with the
``POST /feast/materialize`` body as a file path or inline JSON. Prints the result as JSON on the
last line of output.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from asgard_ray.config import Settings
from asgard_ray.entrypoints import load_request
from asgard_ray.jobs import run_job
from asgard_ray.serving.materialize import MATERIALIZE_JOB, MaterializeRequest

log = logging.getLogger("asgard.jobs.materialize")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--request", help="the POST /feast/materialize body: a JSON file path or the JSON itself")
    parser.add_argument("--feature-view", action="append", default=[], help="a view to materialize (repeatable)")
    parser.add_argument("--start", help="earliest event time (ISO-8601)")
    parser.add_argument("--end", help="latest event time (ISO-8601)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Materialize and print the result."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = parse_args(argv)
    body = (
        load_request(args.request) if args.request else {"feature_views": args.feature_view, "start_date": args.start, "end_date": args.end}
    )
    request = MaterializeRequest.model_validate(body)
    # the job runs as the jobs core's Ray task materialize:<job_id>, like one started over HTTP
    out = run_job(MATERIALIZE_JOB.name, request, settings=Settings())
    log.info("materialized %s in %.2fs", [v["name"] for v in out["feature_views"]], out["seconds"])
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
