"""The one table from domain errors to HTTP statuses, and the JSON error body ``{"error", "detail"}``.

Error bodies never carry tracebacks, process ids or terminal (ANSI) codes: a domain error raised in
a Ray task or actor is answered with its own status and message (the wrapper is dropped), text
that quotes a Ray error is reduced to its summary and the final exception line (``clean_text``), and
any other failure is a 500 that carries only an incident id (the detail goes to the server log).
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from asgard_ray import errors as e

__all__ = ["STATUS", "ErrorBody", "clean_detail", "clean_text", "domain_response", "install_error_handlers", "unwrap_ray_error"]

log = logging.getLogger(__name__)

STATUS: dict[type[e.AsgardError], int] = {
    e.InvalidRequest: 422,
    e.NotFound: 404,
    e.Conflict: 409,
    e.PayloadTooLarge: 413,
    e.Unauthorized: 401,
    e.Forbidden: 403,
    e.ServiceUnavailable: 503,
    e.TooManyJobs: 429,
}

from pydantic import BaseModel  # noqa: E402


class ErrorBody(BaseModel):
    """Every error response: a short message and details to act on."""

    error: str
    detail: object | None = None


def _status_of(exc: e.AsgardError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_RAY_LOCATION = re.compile(r"[,:]?\s*ray::\S+(?:\s*\([^)]*\))?")
_PROCESS = re.compile(r"\s*\((?:pid|ip|actor_id)=[^)]*\)")
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*: ")
_MAX_MESSAGE = 1000


def clean_text(text: str) -> str:
    """``text`` without terminal codes, control characters, tracebacks or Ray process locations.

    A Ray error's text (``RayTaskError``, ``RayActorError``) is a summary line, a traceback and the
    exception line; what is left is ``<summary>: <ExceptionType>: <message>``.
    """
    text = _CONTROL.sub("", _ANSI.sub("", text))
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return text.strip()
    traceback = any(line.startswith(("  File ", "Traceback (most recent call last)")) for line in lines)
    if traceback or "ray::" in text:
        head = _RAY_LOCATION.sub("", lines[0]).strip().rstrip(",:")
        if head.startswith(("  File ", "Traceback")):
            head = ""
        tail = next((line.strip() for line in reversed(lines[1:]) if _EXCEPTION_LINE.match(line)), "")
        text = f"{head}: {tail}" if head and tail else head or tail or "an internal task failed"
    else:
        text = "\n".join(line for line in lines if not line.startswith("\t"))  # Ray's actor metadata lines
    text = _PROCESS.sub("", text).strip()
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def clean_detail(detail: Any) -> Any:
    """``detail`` with every string passed through ``clean_text`` (dicts and lists walked, depth-bounded)."""

    def walk(value: Any, depth: int) -> Any:
        if isinstance(value, str):
            return clean_text(value)
        if depth > 32:
            return None
        if isinstance(value, dict):
            return {clean_text(str(k)): walk(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [walk(v, depth + 1) for v in value]
        return value

    return walk(detail, 0)


def unwrap_ray_error(exc: BaseException) -> BaseException:
    """The domain error inside a Ray task error (``RayTaskError.cause``), else ``exc`` itself."""
    seen = 0
    while seen < 8 and isinstance(getattr(exc, "cause", None), BaseException):
        cause = exc.cause  # type: ignore[attr-defined]
        if isinstance(cause, e.AsgardError) or cause is exc:
            return cause
        exc, seen = cause, seen + 1
    return exc


def _ray_actor_gone(exc: BaseException) -> bool:
    rex = sys.modules.get("ray.exceptions")
    return rex is not None and isinstance(exc, rex.RayActorError | rex.ActorUnavailableError)


def domain_response(exc: e.AsgardError) -> JSONResponse:
    """The ``ErrorBody`` response of a domain error, with its status from ``STATUS`` (and ``Retry-After``)."""
    status = _status_of(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status == 503:
        headers = {"Retry-After": "5"}
    retry_after = getattr(exc, "retry_after", None)  # e.g. TooManyJobs (429)
    if retry_after is not None:
        headers = {"Retry-After": str(retry_after)}
    message = clean_text(str(getattr(exc, "message", None) or exc))
    body = ErrorBody(error=message, detail=clean_detail(jsonable_encoder(getattr(exc, "detail", None))))
    return JSONResponse(status_code=status, content=jsonable_encoder(body), headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn exceptions into ``ErrorBody`` responses."""

    @app.exception_handler(e.AsgardError)
    async def _domain(_: Request, exc: e.AsgardError) -> JSONResponse:
        cause = unwrap_ray_error(exc)  # a RayTaskError that is also an instance of its cause's class
        return domain_response(cause if isinstance(cause, e.AsgardError) else exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [{"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")} for err in exc.errors()]
        summary = "; ".join(f"{'.'.join(str(p) for p in pr['loc'][1:]) or 'body'}: {pr['msg']}" for pr in problems)
        return JSONResponse(
            status_code=422,
            content={"error": clean_text(f"invalid request: {summary}"), "detail": clean_detail(jsonable_encoder(problems))},
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            status_code=exc.status_code,
            content={"error": clean_text(str(exc.detail)), "detail": None},
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        cause = unwrap_ray_error(exc)
        if isinstance(cause, e.AsgardError):  # a domain error raised inside a Ray task
            return domain_response(cause)
        if _ray_actor_gone(exc):
            log.warning("actor unavailable on %s %s: %s", request.method, request.url.path, clean_text(str(exc)))
            return domain_response(e.ServiceUnavailable("a platform actor is restarting; retry in a few seconds"))
        incident = uuid.uuid4().hex[:12]
        log.exception("unhandled error %s on %s %s", incident, request.method, request.url.path)
        return JSONResponse(status_code=500, content={"error": "internal server error", "detail": {"incident": incident}})
