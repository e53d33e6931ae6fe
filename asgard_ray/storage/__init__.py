"""Storage: one S3 filesystem for every read and write, the path resolver, and output leases."""

from asgard_ray.storage.lease import LEASE_NAME, LeaseInfo, OutputLease, current_lease, lease_uri, release_claim, reserve_output
from asgard_ray.storage.paths import Access, Location, allowed_locations, normalise_key, resolve_location
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
    to_uri,
    write_bytes,
    write_json,
)

__all__ = [
    "LEASE_NAME",
    "Access",
    "LeaseInfo",
    "Location",
    "OutputLease",
    "ParsedUri",
    "allowed_locations",
    "current_lease",
    "delete_prefix",
    "ensure_buckets",
    "exists",
    "filesystem",
    "lease_uri",
    "list_files",
    "normalise_key",
    "parse_uri",
    "read_bytes",
    "read_json",
    "release_claim",
    "reserve_output",
    "resolve",
    "resolve_location",
    "to_uri",
    "write_bytes",
    "write_json",
]
