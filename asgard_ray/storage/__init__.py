"""S3 (and, in embedded mode, local) storage: one filesystem for every read and write."""

from asgard_ray.storage.s3 import (
    ParsedUri,
    delete_prefix,
    ensure_buckets,
    exists,
    filesystem,
    list_files,
    parse_uri,
    read_bytes,
    read_json,
    resolve,
    write_bytes,
    write_json,
)

__all__ = [
    "ParsedUri",
    "delete_prefix",
    "ensure_buckets",
    "exists",
    "filesystem",
    "list_files",
    "parse_uri",
    "read_bytes",
    "read_json",
    "resolve",
    "write_bytes",
    "write_json",
]
