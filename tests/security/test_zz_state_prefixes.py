"""Every prefix the platform wrote on the live stack is a state location the path resolver refuses (issue 23).

Runs after the rest of the suite on the session's stack (the e2e, fault and security tests share it),
so it sees what a whole session wrote. Each object in the platform bucket must be either under one of
``Settings.state_locations()`` (what the resolver refuses to requests) or under a location that some
request named (a batch job's ``output_path`` or ``entities_source.path``, read back from the job
records). Anything else is platform state written to a prefix nobody added to the list: a request
could overwrite it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import stack_settings
from tests.security.conftest import World

pytestmark = [pytest.mark.e2e]


def _uris(value: Any) -> set[str]:
    """Every ``s3://`` string in a JSON value."""
    if isinstance(value, str):
        return {value} if value.startswith("s3://") else set()
    if isinstance(value, dict):
        return {u for v in value.values() for u in _uris(v)}
    if isinstance(value, list):
        return {u for v in value for u in _uris(v)}
    return set()


def test_every_prefix_the_platform_wrote_is_refused_to_requests(world: World) -> None:
    from asgard_ray.storage import Access, resolve_location
    from asgard_ray.storage.paths import state_prefixes

    settings = stack_settings(world.env)
    bucket = settings.s3_bucket
    keys = [o["Key"] for page in world.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket) for o in page.get("Contents", [])]
    assert keys, "the stack wrote nothing: this test ran alone, with nothing to check"
    state = [prefix for b, prefix in state_prefixes(settings, Access.WRITE).values() if b == bucket]
    jobs_root = settings.state_uri("jobs").removeprefix(f"s3://{bucket}/")
    named: set[str] = set()
    for key in keys:
        if key.startswith(jobs_root + "/") and key.endswith(".json") and "/_" not in key:
            record = json.loads(world.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            named |= {u.removeprefix(f"s3://{bucket}/").rstrip("/") for u in _uris(record.get("request"))}
    strays = sorted(
        {
            "/".join(key.split("/")[:2])
            for key in keys
            if not any(key == p or key.startswith(p + "/") for p in state)
            and not any(key == n or key.startswith(n + "/") for n in named)
        }
    )
    assert not strays, f"platform writes outside every state location and every requested location: {strays}"
    for prefix in state:  # and each of them is refused to requests
        with pytest.raises(Exception, match="platform state"):
            resolve_location(settings, f"s3://{bucket}/{prefix}/x", access=Access.WRITE, field="output_path")
