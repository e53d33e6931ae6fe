"""Domain exceptions. No HTTP here: ``asgard_ray.api.errors`` maps them to status codes in one table."""

from __future__ import annotations

__all__ = [
    "AsgardError",
    "Conflict",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "PayloadTooLarge",
    "ResourcesUnavailable",
    "ServiceUnavailable",
    "TooManyJobs",
    "Unauthorized",
]


class AsgardError(Exception):
    """Base class of every error the platform raises on purpose."""

    def __init__(self, message: str, *, detail: object | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def __reduce__(self) -> tuple[object, ...]:
        # Keep ``detail`` (and subclass fields) when the error crosses a Ray process boundary.
        return (type(self), (self.message,), self.__dict__)


class InvalidRequest(AsgardError):
    """The request is well-formed JSON but cannot be carried out as asked (HTTP 422)."""


class NotFound(AsgardError):
    """A named thing (feature view, model, version, run, job, table) does not exist (HTTP 404)."""


class Conflict(AsgardError):
    """The request clashes with existing state (HTTP 409)."""


class PayloadTooLarge(AsgardError):
    """The request carries more than the platform accepts inline (HTTP 413)."""


class Unauthorized(AsgardError):
    """No valid credentials (HTTP 401)."""


class Forbidden(AsgardError):
    """Valid credentials without the needed scope (HTTP 403)."""


class ServiceUnavailable(AsgardError):
    """A backing service (Ray, MLflow, S3, Feast) cannot be reached (HTTP 503)."""


class ResourcesUnavailable(ServiceUnavailable):
    """A job waited longer than ``ASGARD_JOB_PENDING_TIMEOUT_S`` for the CPUs it asked for (HTTP 503)."""


class TooManyJobs(AsgardError):
    """A kind's queue of waiting jobs is full; retry later (HTTP 429 with ``Retry-After``)."""

    def __init__(self, message: str, *, detail: object | None = None, retry_after: int = 5) -> None:
        super().__init__(message, detail=detail)
        self.retry_after = retry_after
