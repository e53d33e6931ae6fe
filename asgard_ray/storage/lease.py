"""One writer per output path: a lease object taken with an S3 conditional PUT.

A job that writes under ``<output_path>`` first creates ``<output_path>/_lease.json`` with
``If-None-Match: *``, which S3 (and moto's server, checked against moto 5.2.5) accepts only when
no such object exists, so exactly one of two racing jobs gets it, from any node. The object holds
the job id, the holder (host, pid, a random token), the TTL and the times. While the job runs a
heartbeat thread rewrites it every ``ttl / 3`` with ``If-Match: <our ETag>``; a job that dies stops
renewing, and once ``ttl`` has passed since the object's ``Last-Modified`` another job may take it
over, again with ``If-Match`` on the ETag it saw, so two takers cannot both win. Age is measured on
the server's clock (``Last-Modified`` against the response's ``Date``), so node clocks never matter.
Release is a ``DELETE`` with ``If-Match``: a job never removes a lease it no longer holds.

A lease held by an earlier attempt of the same job id (a job re-run after a crash) is taken over
at once. For ``local://`` outputs (development root) the same protocol runs on the host with
``O_CREAT | O_EXCL`` and the file's mtime.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asgard_ray.config import Settings
from asgard_ray.errors import Conflict
from asgard_ray.storage.s3 import host_path, parse_uri, s3_client

__all__ = ["LEASE_NAME", "LeaseInfo", "OutputLease", "current_lease", "lease_uri", "release_claim", "reserve_output"]

log = logging.getLogger(__name__)

LEASE_NAME = "_lease.json"


CLAIM_PREFIX = "claim:"
"""Holder prefix of a submission's claim (``reserve_output``), as opposed to a running job's lease."""


def lease_uri(output_path: str) -> str:
    """The lease object of an output prefix."""
    return f"{output_path.rstrip('/')}/{LEASE_NAME}"


@dataclass(frozen=True)
class LeaseInfo:
    """A lease as read from storage."""

    job_id: str
    holder: str
    ttl_s: float
    age_s: float
    etag: str

    @property
    def expired(self) -> bool:
        """Whether the holder has missed its heartbeats for longer than the TTL."""
        return self.age_s > self.ttl_s


class _Lost(Exception):
    """The conditional write found another lease (or none)."""


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


class _S3Backend:
    def __init__(self, settings: Settings, uri: str) -> None:
        parsed = parse_uri(uri)
        self.client = s3_client(settings)
        self.bucket = parsed.bucket
        self.key = parsed.path.split("/", 1)[1]

    def read(self) -> LeaseInfo | None:
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except self.client.exceptions.NoSuchKey:
            return None
        body = _parse(resp["Body"].read())
        date = resp["ResponseMetadata"].get("HTTPHeaders", {}).get("date")
        now = email.utils.parsedate_to_datetime(date) if date else datetime.now(UTC)
        age = (now - resp["LastModified"]).total_seconds()
        return LeaseInfo(str(body.get("job_id", "?")), str(body.get("holder", "?")), float(body.get("ttl_s", 0)), age, resp["ETag"])

    def create(self, body: bytes) -> str:
        try:
            return str(self.client.put_object(Bucket=self.bucket, Key=self.key, Body=body, IfNoneMatch="*")["ETag"])
        except self.client.exceptions.ClientError as exc:
            if _code(exc) in ("PreconditionFailed", "ConditionalRequestConflict", "412"):
                raise _Lost from exc
            raise

    def replace(self, body: bytes, etag: str) -> str:
        try:
            return str(self.client.put_object(Bucket=self.bucket, Key=self.key, Body=body, IfMatch=etag)["ETag"])
        except self.client.exceptions.ClientError as exc:
            if _code(exc) in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "412", "404"):
                raise _Lost from exc
            raise

    def delete(self, etag: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=etag)
        except self.client.exceptions.ClientError as exc:
            if _code(exc) not in ("PreconditionFailed", "NoSuchKey", "412", "404"):
                raise


class _LocalBackend:
    """Development root only: same protocol on a host file (tag = the holder token)."""

    def __init__(self, settings: Settings, uri: str) -> None:
        self.path = host_path(settings, parse_uri(uri))
        self._mutex = threading.Lock()

    def read(self) -> LeaseInfo | None:
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
            age = time.time() - os.path.getmtime(self.path)
        except FileNotFoundError:
            return None
        body = _parse(raw)
        return LeaseInfo(
            str(body.get("job_id", "?")), str(body.get("holder", "?")), float(body.get("ttl_s", 0)), age, str(body.get("token", ""))
        )

    def create(self, body: bytes) -> str:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError as exc:
            raise _Lost from exc
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        return str(_parse(body)["token"])

    def replace(self, body: bytes, etag: str) -> str:
        with self._mutex:
            current = self.read()
            if current is None or current.etag != etag:
                raise _Lost
            tmp = f"{self.path}.{uuid.uuid4().hex}"
            with open(tmp, "wb") as f:
                f.write(body)
            os.replace(tmp, self.path)
        return str(_parse(body)["token"])

    def delete(self, etag: str) -> None:
        current = self.read()
        if current is not None and current.etag == etag:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _backend(settings: Settings, output_path: str) -> _S3Backend | _LocalBackend:
    uri = lease_uri(output_path)
    return _S3Backend(settings, uri) if parse_uri(uri).scheme == "s3" else _LocalBackend(settings, uri)


def current_lease(settings: Settings, output_path: str) -> LeaseInfo | None:
    """The live lease on ``output_path``, or ``None`` when there is none or it has expired."""
    info = _backend(settings, output_path).read()
    return None if info is None or info.expired else info


def _held_by(output_path: str, info: LeaseInfo) -> Conflict:
    return Conflict(
        f"output_path {output_path} is being written by job {info.job_id}; wait for that job to finish or choose another output_path",
        detail={"output_path": output_path, "holder_job_id": info.job_id},
    )


class OutputLease:
    """Hold the single-writer lease on one output path for the length of a ``with`` block.

    Example::

        with OutputLease(settings, plan.output_path, job_id) as lease:
            ...write files...
            lease.check()          # raises Conflict if the lease was lost
            ...commit...
    """

    def __init__(self, settings: Settings, output_path: str, job_id: str, ttl_s: float | None = None, *, claim: bool = False) -> None:
        self.output_path = output_path.rstrip("/")
        self.job_id = job_id
        self.ttl_s = float(ttl_s or settings.asgard_output_lease_ttl_s)
        self.holder = f"{CLAIM_PREFIX if claim else ''}{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._backend = _backend(settings, self.output_path)
        self._etag: str | None = None
        self._lost = False
        self._beats = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # a heartbeat's PUT and a check's GET must not interleave: a check that reads the renewed lease
        # before the heartbeat has stored its new ETag would see a lease "lost" to itself
        self._io = threading.Lock()

    def _body(self) -> bytes:
        now = datetime.now(UTC)
        return json.dumps(
            {
                "job_id": self.job_id,
                "holder": self.holder,
                "token": uuid.uuid4().hex,
                "ttl_s": self.ttl_s,
                "renewed_at": now.isoformat(),
                "heartbeat": self._beats,
                "expires_at": datetime.fromtimestamp(now.timestamp() + self.ttl_s, UTC).isoformat(),
            }
        ).encode()

    def acquire(self) -> OutputLease:
        """Take the lease.

        Raises:
            Conflict: Another job holds a live lease on the path (the message names it).
        """
        for _ in range(3):
            try:
                self._etag = self._backend.create(self._body())
                log.info("job %s: lease on %s taken (holder %s)", self.job_id, self.output_path, self.holder)
                return self
            except _Lost:
                pass
            info = self._backend.read()
            if info is None:
                continue  # released between our create and read: try again
            if not info.expired and info.job_id != self.job_id:
                raise _held_by(self.output_path, info)
            try:
                self._etag = self._backend.replace(self._body(), info.etag)
            except _Lost:
                continue
            log.warning(
                "job %s: took over the lease on %s from %s (job %s, %s)",
                self.job_id,
                self.output_path,
                info.holder,
                info.job_id,
                "expired" if info.expired else "same job",
            )
            return self
        info = self._backend.read()
        if info is not None:
            raise _held_by(self.output_path, info)
        raise Conflict(f"could not take the lease on output_path {self.output_path}; try again")

    def renew(self) -> None:
        """Rewrite the lease (conditional on still holding it); mark it lost otherwise."""
        with self._io:
            if self._etag is None or self._lost:
                return
            self._beats += 1
            try:
                self._etag = self._backend.replace(self._body(), self._etag)
            except _Lost:
                self._lost = True
                log.error("job %s: lost the lease on %s", self.job_id, self.output_path)

    def check(self) -> None:
        """Make sure the lease is still ours (call right before committing).

        Raises:
            Conflict: The lease expired and another job took it.
        """
        with self._io:
            info = self._backend.read()
            lost = self._lost or info is None or info.etag != self._etag
        if lost:
            self._lost = True
            who = f" to job {info.job_id}" if info is not None else ""
            raise Conflict(f"job {self.job_id} lost its lease on output_path {self.output_path}{who}; output discarded, re-run the job")

    def release(self) -> None:
        """Remove the lease if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._etag is not None and not self._lost:
            try:
                self._backend.delete(self._etag)
            except Exception as exc:  # expiry frees it anyway
                log.warning("job %s: releasing the lease on %s failed: %s", self.job_id, self.output_path, exc)
            else:
                log.info("job %s: lease on %s released", self.job_id, self.output_path)
        self._etag = None

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self.renew()
            except Exception as exc:  # a missed beat is retried; the TTL covers two of them
                log.warning("job %s: lease heartbeat on %s failed: %s", self.job_id, self.output_path, exc)

    def __enter__(self) -> OutputLease:
        self.acquire()
        self._thread = threading.Thread(target=self._heartbeat, name=f"lease-{self.job_id}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def reserve_output(settings: Settings, output_path: str, job_id: str) -> Callable[[], None]:
    """Claim ``output_path`` for ``job_id`` before its job is submitted; return the release.

    The claim is an ordinary lease, written by the submitting process without a heartbeat, with a
    TTL of at least two minutes: the job's own ``OutputLease`` takes it over when the job starts
    (same job id). A second request for the path meanwhile gets its 409 at submission instead of
    a job that fails when it starts. If the job never starts, the claim expires.

    Raises:
        Conflict: Another job holds a live lease on the path.
    """
    lease = OutputLease(settings, output_path, job_id, ttl_s=max(settings.asgard_output_lease_ttl_s, 120.0), claim=True)
    lease.acquire()
    return lease.release


def release_claim(settings: Settings, output_path: str, job_id: str) -> bool:
    """Remove ``job_id``'s submission claim on ``output_path`` if no run of the job took it over.

    Only a claim (``reserve_output``) is removed, never a running job's lease: two attempts of one
    job share its id, and an attempt that ends must not free the path under another that still
    writes. A dead job's own lease expires after ``ASGARD_OUTPUT_LEASE_TTL_S``. Conditional on the
    lease read, so a job that took the claim over meanwhile keeps it.

    Returns whether a claim was removed.
    """
    backend = _backend(settings, output_path.rstrip("/"))
    info = backend.read()
    if info is None or info.job_id != job_id or not info.holder.startswith(CLAIM_PREFIX):
        return False
    try:
        backend.delete(info.etag)
    except Exception as exc:  # expiry frees it anyway
        log.warning("job %s: removing its claim on %s failed: %s", job_id, output_path, exc)
        return False
    log.info("job %s: claim on %s removed (no run took it over)", job_id, output_path)
    return True
