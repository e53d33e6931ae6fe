"""One writer of the Feast registry, as an API replica or a job driver is: registers views when told to go.

Run by ``test_feast_sql_registry.py`` as several processes at once, each with the stack's environment::

    python -m tests.production.register_views --sync <dir> view_a view_b
    python -m tests.production.register_views --list

A writer imports Feast and opens the registry first, then writes ``<dir>/ready-<pid>`` and waits for
``<dir>/go``, so the registrations themselves overlap, not the imports. Each view is registered on a
thread of its own with ``FeatureRegistry.register_here``: straight into the registry, without the
writer actor that serialises the file registry's writers. One JSON line is printed: the statuses, or
the listed names.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    """Register the named views (or list the registry's views) and print the answer as JSON."""
    from asgard_ray.config import Settings
    from asgard_ray.features import FeatureRegistry, FeatureViewSpec
    from asgard_ray.features.specs import SEED_EXAMPLE
    from asgard_ray.features.store import feature_store

    parser = argparse.ArgumentParser()
    parser.add_argument("names", nargs="*")
    parser.add_argument("--sync", type=Path)
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args(argv)
    settings = Settings()
    store = feature_store(settings)
    if args.list:
        print("LISTED " + json.dumps(sorted(fv.name for fv in store.list_feature_views())))  # noqa: T201
        return
    store.list_feature_views()  # connected and warm
    if args.sync:
        (args.sync / f"ready-{os.getpid()}").touch()
        deadline = time.monotonic() + 300
        while not (args.sync / "go").exists():
            if time.monotonic() > deadline:
                raise TimeoutError("no go signal within 300s")
            time.sleep(0.01)
    registry = FeatureRegistry(settings)

    def register(name: str) -> str:
        return registry.register_here(FeatureViewSpec.model_validate({**SEED_EXAMPLE, "name": name})).status

    with ThreadPoolExecutor(max_workers=max(1, len(args.names))) as pool:
        statuses = dict(zip(args.names, pool.map(register, args.names), strict=True))
    print("REGISTERED " + json.dumps(statuses))  # noqa: T201


if __name__ == "__main__":
    main()
