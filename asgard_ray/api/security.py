"""API keys with read/write scopes, and the request-body size limit, as one ASGI middleware.

Serve has no auth of its own, and Ray's docs warn that the dashboard and Jobs API run arbitrary code,
so the control API checks ``Authorization: Bearer <key>`` itself once any key is configured. Keys are
compared with ``hmac.compare_digest`` and never logged or echoed.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Literal

from asgard_ray.config import Settings
from asgard_ray.errors import InvalidRequest

__all__ = ["ApiKeys", "SecurityMiddleware", "check_bind", "load_keys"]

log = logging.getLogger(__name__)

Scope = Literal["read", "write"]
OPEN_PATHS = frozenset({"/mlops/health"})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# POST routes that only read (queries with a body); read-only keys may call them
READ_POSTS = frozenset({"/mlops/monitoring/history"})

Message = MutableMapping[str, Any]
ASGIApp = Callable[[Message, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


@dataclass(frozen=True)
class ApiKeys:
    """The configured keys by scope."""

    write: tuple[bytes, ...] = ()
    read: tuple[bytes, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.write or self.read)

    def scope_of(self, presented: str) -> Scope | None:
        """The scope a presented key grants, comparing in constant time against every key."""
        given = presented.encode()
        scope: Scope | None = None
        for key in self.read:
            if hmac.compare_digest(given, key):
                scope = "read"
        for key in self.write:
            if hmac.compare_digest(given, key):
                scope = "write"
        return scope


def load_keys(settings: Settings) -> ApiKeys:
    """Collect keys from ``ASGARD_API_KEY``, ``ASGARD_API_READ_KEYS`` and ``ASGARD_API_KEY_FILE``."""
    write = [settings.asgard_api_key.get_secret_value()] if settings.asgard_api_key else []
    read = [k.get_secret_value() for k in settings.asgard_api_read_keys]
    if settings.asgard_api_key_file:
        for n, line in enumerate(settings.asgard_api_key_file.read_text().splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            scope, _, key = line.partition(":")
            if scope not in ("read", "write") or not key:
                raise ValueError(f"{settings.asgard_api_key_file}:{n}: expected '<read|write>:<key>'")
            (write if scope == "write" else read).append(key)
    return ApiKeys(write=tuple(k.encode() for k in write if k), read=tuple(k.encode() for k in read if k))


def check_bind(settings: Settings, keys: ApiKeys | None = None) -> None:
    """Refuse to serve beyond loopback without an API key."""
    keys = keys or load_keys(settings)
    host = settings.asgard_api_host
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not keys.enabled:
        raise InvalidRequest(
            f"refusing to bind the API to {host} without an API key; set ASGARD_API_KEY (or ASGARD_API_KEY_FILE) "
            "or bind 127.0.0.1"
        )


async def _reply(send: Callable[[Message], Awaitable[None]], status: int, error: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"error": error, "detail": None}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    pass


class SecurityMiddleware:
    """Authenticate, authorise by scope, and cap the request body."""

    def __init__(self, app: ASGIApp, keys: ApiKeys, max_body_bytes: int) -> None:
        self.app = app
        self.keys = keys
        self.max_body = max_body_bytes

    async def __call__(self, scope: Message, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        method: str = scope.get("method", "GET")
        headers = {k.decode().lower(): v.decode(errors="replace") for k, v in scope.get("headers", [])}

        if self.keys.enabled and path not in OPEN_PATHS:
            auth = headers.get("authorization", "")
            kind, _, token = auth.partition(" ")
            granted = self.keys.scope_of(token.strip()) if kind.lower() == "bearer" and token else None
            if granted is None:
                await _reply(send, 401, "missing or invalid API key; send 'Authorization: Bearer <key>'", {"WWW-Authenticate": 'Bearer realm="asgard"'})
                return
            mutating = method not in READ_METHODS and path not in READ_POSTS
            if mutating and granted != "write":
                await _reply(send, 403, f"this key is read-only; {method} {path} needs a write key")
                return

        length = headers.get("content-length")
        if length and length.isdigit() and int(length) > self.max_body:
            await _reply(send, 413, f"request body of {length} bytes exceeds the {self.max_body}-byte limit; "
                                    "for large entity sets use entities_source (Parquet on S3)")
            return

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await _reply(send, 413, f"request body exceeds the {self.max_body}-byte limit")
