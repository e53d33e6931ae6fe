"""The one table from domain errors to HTTP statuses, and the JSON error body ``{"error", "detail"}``."""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from asgard_ray import errors as e

__all__ = ["STATUS", "ErrorBody", "install_error_handlers"]

log = logging.getLogger(__name__)

STATUS: dict[type[e.AsgardError], int] = {
    e.InvalidRequest: 422,
    e.NotFound: 404,
    e.Conflict: 409,
    e.PayloadTooLarge: 413,
    e.Unauthorized: 401,
    e.Forbidden: 403,
    e.ServiceUnavailable: 503,
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


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn exceptions into ``ErrorBody`` responses."""

    @app.exception_handler(e.AsgardError)
    async def _domain(_: Request, exc: e.AsgardError) -> JSONResponse:
        status = _status_of(exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        if status == 503:
            headers = {"Retry-After": "5"}
        return JSONResponse(status_code=status, content=jsonable_encoder(ErrorBody(error=exc.message, detail=exc.detail)), headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
            for err in exc.errors()
        ]
        summary = "; ".join(f"{'.'.join(str(p) for p in pr['loc'][1:]) or 'body'}: {pr['msg']}" for pr in problems)
        return JSONResponse(status_code=422, content={"error": f"invalid request: {summary}", "detail": problems})

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content={"error": str(exc.detail), "detail": None}, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        incident = uuid.uuid4().hex[:12]
        log.exception("unhandled error %s on %s %s", incident, request.method, request.url.path)
        return JSONResponse(status_code=500, content={"error": "internal server error", "detail": {"incident": incident}})
