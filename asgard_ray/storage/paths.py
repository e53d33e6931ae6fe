"""The one resolver for every storage location a request names.

Batch ``output_path``, ``entities_source.path``, gold tables, the scoring output a monitoring job
reads: each string that came in over the API (or a ``jobs/`` entrypoint) passes
:func:`resolve_location` before any storage call sees it. The resolver is pure (no I/O), so it
cannot tell a caller whether something exists where it was refused.

What it accepts:

- ``s3://<bucket>/<key>`` on the platform's object store, where ``<bucket>[/<prefix>]`` is on an
  allow-list: ``ASGARD_OUTPUT_BUCKETS`` for writes, ``ASGARD_INPUT_BUCKETS`` for reads (default:
  the platform bucket plus the output buckets). Entries are a bucket (``my-bucket``) or a bucket
  and key prefix (``my-bucket/predictions``). The platform bucket's internal areas (job records,
  monitoring log, Feast registry, MLflow artifacts) are refused for reads and writes; its gold
  schema folder is always readable and never writable.
- ``local://<relative path>``, only when ``ASGARD_LOCAL_ROOT`` is set (development and local
  benchmarks): the path is taken relative to that folder and confined with ``realpath``, so a
  symlink inside the root cannot lead out of it. Unset (the default), every local form is refused.

What it refuses, in every mode: ``file://``, bare host paths (``/tmp/x``, ``relative/dir``), every
other scheme (``http:``, ``gs:``, ...), a key that climbs above its bucket or root after
normalisation, control and invisible characters, backslashes, a whole bucket or root.

Normalisation runs BEFORE the checks: percent-encoding is decoded until stable (``%252e`` ->
``%2e`` -> ``.``), Unicode is NFKC-folded (fullwidth ``．．／`` becomes ``../``), then ``.``,
``..`` and repeated slashes are collapsed. The canonical form (``s3://b/k`` or ``local://k``) is
what the platform stores and shows.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal
from urllib.parse import unquote

from asgard_ray.config import Settings
from asgard_ray.errors import InvalidRequest

__all__ = [
    "READABLE_STATE",
    "Access",
    "Location",
    "allowed_locations",
    "confine_local",
    "normalise_key",
    "resolve_location",
    "state_prefixes",
]

READABLE_STATE = frozenset({"gold", "warehouse"})
"""State locations a request may read (the gold tables and the Iceberg warehouse), but never write."""

MAX_LOCATION_CHARS = 1024
"""Longest location string accepted (S3 keys stop at 1024 bytes)."""

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_DECODE_ROUNDS = 4


class Access(StrEnum):
    """What the caller will do at the location (picks the allow-list)."""

    READ = "read"
    WRITE = "write"


@dataclass(frozen=True)
class Location:
    """A checked, normalised storage location."""

    scheme: Literal["s3", "local"]
    bucket: str | None
    key: str

    @property
    def uri(self) -> str:
        """The canonical URI (``s3://bucket/key`` or ``local://key``)."""
        return f"s3://{self.bucket}/{self.key}" if self.scheme == "s3" else f"local://{self.key}"

    def contains(self, uri: str) -> bool:
        """Whether ``uri`` (canonical form) is this location or below it."""
        return uri == self.uri or uri.startswith(self.uri.rstrip("/") + "/")


def _refuse(field: str, raw: str, why: str) -> InvalidRequest:
    shown = raw if len(raw) <= 200 else raw[:200] + "..."
    return InvalidRequest(f"{field} {shown!r} is refused: {why}", detail={"field": field})


def _decode(field: str, raw: str) -> str:
    text = raw
    for _ in range(_DECODE_ROUNDS):
        decoded = unquote(text, errors="strict") if "%" in text else text
        if decoded == text:
            return text
        text = decoded
    raise _refuse(field, raw, "percent-encoding nested too deep; send the location as plain text")


def _check_chars(field: str, raw: str, text: str) -> None:
    for ch in text:
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            raise _refuse(field, raw, f"it contains the control or invisible character U+{ord(ch):04X}")
    if "\\" in text:
        raise _refuse(field, raw, "backslashes are not path separators here; use '/'")


def normalise_key(key: str) -> str | None:
    """Collapse ``.``, ``..`` and repeated slashes in a key; ``None`` when it climbs above its root.

    Args:
        key: The part after the bucket (or after ``local://``), already decoded.

    Returns:
        The key without leading or trailing slashes, or ``None`` if ``..`` goes above the root.
    """
    parts: list[str] = []
    for part in key.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
            continue
        parts.append(part)
    return "/".join(parts)


def _entries(values: list[str]) -> list[tuple[str, str]]:
    out = []
    for value in values:
        text = value.strip().removeprefix("s3://").strip("/")
        bucket, _, prefix = text.partition("/")
        if bucket:
            out.append((bucket, normalise_key(prefix) or ""))
    return out


def allowed_locations(settings: Settings, access: Access) -> list[tuple[str, str]]:
    """The ``(bucket, key prefix)`` pairs a request may name for ``access`` (prefix ``""``: whole bucket)."""
    writes = _entries(list(settings.asgard_output_buckets))
    if access is Access.WRITE:
        return writes
    configured = settings.asgard_input_buckets
    reads = _entries(list(configured)) if configured is not None else [(settings.s3_bucket, ""), *writes]
    gold = (settings.s3_bucket, settings.gold_schema.strip("/"))
    return list(dict.fromkeys([*reads, gold]))


def _under(key: str, prefix: str) -> bool:
    return not prefix or key == prefix or key.startswith(prefix + "/")


def state_prefixes(settings: Settings, access: Access) -> dict[str, tuple[str, str]]:
    """The ``(bucket, key prefix)`` of every platform-state location a request may not name for ``access``.

    Derived from ``Settings.state_locations`` (the one list that every writer of state takes its
    prefix from): all of them for writes; for reads, all but the gold tables and the warehouse.
    """
    out = {}
    for name, uri in settings.state_locations().items():
        if access is Access.READ and name in READABLE_STATE:
            continue
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        out[name] = (bucket, normalise_key(prefix) or "")
    return out


def _check_s3(settings: Settings, field: str, raw: str, rest: str, access: Access) -> Location:
    bucket, _, key_raw = rest.partition("/")
    if not bucket:
        raise _refuse(field, raw, "it names no bucket; write it as s3://<bucket>/<prefix>")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise _refuse(field, raw, f"{bucket!r} is not a valid bucket name")
    key = normalise_key(key_raw)
    if key is None:
        raise _refuse(field, raw, "'..' climbs above the bucket")
    allowed = allowed_locations(settings, access)
    setting = "ASGARD_OUTPUT_BUCKETS" if access is Access.WRITE else "ASGARD_INPUT_BUCKETS"
    shown = ", ".join(f"s3://{b}/{p}" for b, p in allowed)
    if not any(bucket == b and _under(key, p) for b, p in allowed):
        raise _refuse(field, raw, f"not an allowed location to {access.value}; use one under {shown} (configure {setting})")
    if not key:
        raise _refuse(field, raw, f"it is a whole bucket; add a prefix such as s3://{bucket}/predictions/run1")
    for name, (state_bucket, prefix) in state_prefixes(settings, access).items():
        # a location that holds state, or one whose subtree does (a write there could replace it)
        if bucket == state_bucket and (_under(key, prefix) or _under(prefix, key)):
            what = name.replace("_", " ")
            raise _refuse(field, raw, f"s3://{state_bucket}/{prefix}/ holds platform state ({what}); use another prefix")
    return Location("s3", bucket, key)


def confine_local(settings: Settings, key: str) -> str:
    """The host path of ``local://<key>``, confined to ``ASGARD_LOCAL_ROOT`` with ``realpath``.

    Symlinks inside the root are followed and the result must still be inside the root.

    Raises:
        InvalidRequest: No local root is configured, or the path leaves it.
    """
    if settings.asgard_local_root is None:
        raise InvalidRequest("local locations are disabled; use s3://<bucket>/<prefix> (ASGARD_LOCAL_ROOT is unset)")
    root = os.path.realpath(settings.asgard_local_root)
    target = os.path.realpath(os.path.join(root, key))
    if target != root and not target.startswith(root.rstrip(os.sep) + os.sep):
        raise InvalidRequest(f"local://{key} leaves the local root; name a path inside it")
    return target


def _check_local(settings: Settings, field: str, raw: str, rest: str) -> Location:
    if settings.asgard_local_root is None:
        raise _refuse(field, raw, "local locations are disabled; use s3://<bucket>/<prefix> (set ASGARD_LOCAL_ROOT for development)")
    key = normalise_key(rest)
    if key is None:
        raise _refuse(field, raw, "'..' climbs above the local root")
    if not key:
        raise _refuse(field, raw, "it is the whole local root; add a folder such as local://predictions/run1")
    try:
        confine_local(settings, key)
    except InvalidRequest:
        raise _refuse(field, raw, "it leads out of the local root (through a symlink)") from None
    return Location("local", None, key)


def resolve_location(settings: Settings, raw: object, *, access: Access, field: str = "path") -> Location:
    """Check and normalise a location named by a request.

    Args:
        settings: Platform settings (allow-lists, local root).
        raw: The value as it came in.
        access: ``READ`` or ``WRITE`` (picks the allow-list).
        field: The request field, for messages (``output_path``, ``entities_source.path``, ...).

    Returns:
        The normalised location; use its ``uri`` from here on.

    Raises:
        InvalidRequest: Anything not allowed; the message says what to send instead and never
            depends on what exists at the location.
    """
    if not isinstance(raw, str):
        raise InvalidRequest(f"{field} must be a string such as s3://<bucket>/<prefix>", detail={"field": field})
    text = raw.strip()
    if not text:
        raise InvalidRequest(f"{field} is empty; give an s3://<bucket>/<prefix> location", detail={"field": field})
    if len(text) > MAX_LOCATION_CHARS:
        raise InvalidRequest(f"{field} is longer than {MAX_LOCATION_CHARS} characters", detail={"field": field})
    _check_chars(field, raw, text)
    try:
        decoded = _decode(field, text)
    except UnicodeDecodeError:
        raise _refuse(field, raw, "its percent-encoding is not valid UTF-8") from None
    folded = unicodedata.normalize("NFKC", decoded)
    _check_chars(field, raw, folded)
    match = _SCHEME.match(folded)
    if match is None:
        raise _refuse(field, raw, "bare paths are not accepted; use s3://<bucket>/<prefix>")
    scheme = match.group(1).lower()
    rest = folded[match.end() :]
    if not rest.startswith("//"):
        raise _refuse(field, raw, f"write it as {scheme}://...")
    rest = rest[2:]
    if scheme in ("s3", "s3a"):
        return _check_s3(settings, field, raw, rest, access)
    if scheme == "local":
        return _check_local(settings, field, raw, rest)
    raise _refuse(field, raw, f"scheme {scheme!r} is not accepted; use s3://<bucket>/<prefix>")
