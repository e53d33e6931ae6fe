"""URI parsing of the storage helper."""

from __future__ import annotations

import pytest

from asgard_ray.errors import InvalidRequest
from asgard_ray.storage import parse_uri


def test_s3_uri() -> None:
    p = parse_uri("s3://my-bucket/predictions/batch.parquet")
    assert (p.scheme, p.bucket, p.path) == ("s3", "my-bucket", "my-bucket/predictions/batch.parquet")
    assert p.uri == "s3://my-bucket/predictions/batch.parquet"


def test_local_paths() -> None:
    assert parse_uri("/tmp/x").scheme == "file"
    assert parse_uri("file:///tmp/x").path == "/tmp/x"


@pytest.mark.parametrize("uri", ["http://example.com/x", "gs://b/k", "s3:///nokey"])
def test_rejected(uri: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_uri(uri)
