"""One way to say why a job failed, and to turn a failed record back into the domain error it was.

A job's task raises inside Ray: what reaches the supervisor or a caller is Ray's wrapper around
the user's exception, sometimes with its text only (pickling drops ``__cause__``). ``describe_failure``
finds the innermost own exception and gives one clean line; the record keeps that line, the
error's class name and its detail, so ``error_from_record`` can raise the same ``AsgardError``
(and so the same HTTP status) for a caller that waited, whichever process ran the job.
"""

from __future__ import annotations

import re
from typing import Any

from asgard_ray.errors import AsgardError, ServiceUnavailable
from asgard_ray.jobs.records import SUPERVISOR_NAME, JobRecord

__all__ = ["JobFailed", "describe_failure", "domain_error", "error_from_record", "innermost"]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_FRAME = re.compile(r"^\s*(File \"|Traceback \(most recent call last\)|During handling|The above exception|\^+$)")
_RAISED = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)): (.+)$", re.MULTILINE)
_RAY_NAME = re.compile(r"^(ray\.|Ray|UserCodeException|ActorDiedError|WorkerCrashedError|ObjectLostError|OwnerDiedError)")


class JobFailed(AsgardError):
    """A job ended ``failed`` for a reason that is not a domain error (HTTP 500 with the cause)."""


def innermost(exc: BaseException) -> BaseException:
    """Unwrap Ray's wrappers (task errors, Ray Data's user-code errors) down to the first own exception."""
    for _ in range(20):
        nxt = getattr(exc, "cause", None)
        if not isinstance(nxt, BaseException) and type(exc).__module__.startswith("ray."):
            nxt = exc.__cause__
        if not isinstance(nxt, BaseException) or nxt is exc:
            break
        exc = nxt
    return exc


def describe_failure(exc: BaseException) -> str:
    """One clean message for a failure: the innermost cause, no traceback, no terminal codes."""
    inner = innermost(exc)
    if isinstance(inner, AsgardError):
        return inner.message
    if type(inner).__module__.startswith("ray."):
        # Pickling drops ``__cause__``: the user's own error survives only in Ray's text. Take its last line.
        own = [m for m in _RAISED.finditer(_ANSI.sub("", str(exc))) if not _RAY_NAME.match(m.group(1))]
        if own:
            return f"{own[-1].group(1).rsplit('.', 1)[-1]}: {own[-1].group(2).strip()[:1000]}"
    text = _ANSI.sub("", str(inner))
    lines = [ln for ln in text.splitlines() if ln.strip() and not _FRAME.match(ln) and not ln.startswith("    ")]
    body = " ".join(ln.strip() for ln in lines)[:1000] or "no message"
    return f"{type(inner).__name__}: {body}"


def domain_error(exc: BaseException) -> AsgardError | None:
    """The domain error behind a Ray failure (a task's or an actor call's), or None."""
    import ray.exceptions as rex

    inner = innermost(exc)
    if isinstance(inner, AsgardError):
        return inner
    if isinstance(exc, rex.ActorUnavailableError | rex.ActorDiedError | rex.RayActorError):
        return ServiceUnavailable("the job supervisor is restarting; retry in a few seconds", detail={"actor": SUPERVISOR_NAME})
    return None


def _error_classes() -> dict[str, type[AsgardError]]:
    out: dict[str, type[AsgardError]] = {}
    stack: list[type[AsgardError]] = [AsgardError]
    while stack:
        cls = stack.pop()
        out[cls.__name__] = cls
        stack.extend(cls.__subclasses__())
    return out


def error_from_record(record: JobRecord) -> AsgardError:
    """The error a failed (or cancelled) job ended with: its own domain error when it raised one, else ``JobFailed``."""
    detail: dict[str, Any] = {**(record.error_detail or {}), "job_id": record.job_id}
    message = record.error or f"job {record.job_id} ended {record.status}"
    cls = _error_classes().get(record.error_type or "")
    if cls is None or cls is AsgardError:
        return JobFailed(message, detail=detail)
    return cls(message, detail=detail)
