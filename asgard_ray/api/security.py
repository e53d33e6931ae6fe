"""The HTTP edge of the control API: keys and scopes, the Host rule, the body limit, the bind rule.

Serve has no auth of its own, and Ray's docs warn that the dashboard and Jobs API run arbitrary code,
so the control API checks ``Authorization: Bearer <key>`` itself once any key is configured. Keys are
compared with ``hmac.compare_digest`` and never logged or echoed.

Without keys the API trusts every loopback process, so it must only ever be reachable from this
machine: ``check_bind`` refuses a Serve proxy bound beyond loopback (reading the proxy's real
``http_options`` from the running Serve controller, not only the environment), and the middleware
answers only to ``Host: 127.0.0.1``, ``localhost`` or ``[::1]``, which closes DNS rebinding (a web page
whose own name resolves to 127.0.0.1 and then calls the API from the user's browser).

The body limit holds for chunked uploads too: the middleware reads the body itself, up to the
limit, before the app sees it, so an oversized body is a 413 however it was framed.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Literal

from asgard_ray.config import Settings
from asgard_ray.errors import InvalidRequest

__all__ = [
    "LOOPBACK_NAMES",
    "ApiKeys",
    "SecurityMiddleware",
    "check_bind",
    "check_serve_bind",
    "host_allowed",
    "is_loopback",
    "load_keys",
    "serve_http_host",
]

log = logging.getLogger(__name__)

Scope = Literal["read", "write"]
OPEN_PATHS = frozenset({"/mlops/health"})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# POST routes that only read (queries with a body); read-only keys may call them
READ_POSTS = frozenset({"/mlops/monitoring/history", "/mlops/serve"})  # predictions read, like /predict
# The Host names a keyless API answers to: loopback literals and the one name that is loopback by
# definition (RFC 6761). Any other name could be an attacker's domain rebound to 127.0.0.1.
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})
_HOST = re.compile(r"(\[[^\]]*\]|[^:\[\]]*)(?::(\d{1,5}))?")  # name or [v6], then an optional port

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Message, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class ApiKeys:
    """The configured keys by scope."""

    write: tuple[bytes, ...] = ()
    read: tuple[bytes, ...] = ()

    @property
    def enabled(self) -> bool:
        """Whether any key is configured (then every route but health needs one)."""
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


# --- the bind rule ---------------------------------------------------------------------------------


def is_loopback(host: str | None) -> bool:
    """Whether a bind address only accepts connections from this machine (``None``: no proxy at all)."""
    if host is None:
        return True
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a DNS name, "0.0.0.0", "::", "": reachable from elsewhere, or unknowable


def check_bind(settings: Settings, keys: ApiKeys | None = None, *, host: str | None = None) -> None:
    """Refuse to serve beyond loopback without an API key.

    Args:
        settings: Where the keys come from (and ``ASGARD_API_HOST`` when ``host`` is not given).
        keys: Already loaded keys, to skip reading them again.
        host: The address actually bound (a Serve proxy's ``http_options.host``); default the setting.

    Raises:
        InvalidRequest: The host is not loopback and no key is configured.
    """
    keys = keys or load_keys(settings)
    host = settings.asgard_api_host if host is None else host
    if not is_loopback(host) and not keys.enabled:
        raise InvalidRequest(
            f"refusing to serve the API on {host!r} without an API key: anyone who can reach it could run "
            "jobs and write models; set ASGARD_API_KEY (or ASGARD_API_KEY_FILE) on every Ray node, or bind "
            "http_options.host to 127.0.0.1"
        )


def serve_http_host() -> str | None:
    """The host the running Serve controller's HTTP proxies bind, or ``None`` without Ray or Serve.

    Never starts Ray: building the app outside a cluster (a unit test, ``serve run`` before it
    connects) leaves the check to the replica, which always runs under the controller.
    """
    import ray

    if not ray.is_initialized():
        return None
    # Ray's documented view of this is ServeInstanceDetails.http_options (GET /api/serve/applications/
    # on the dashboard); inside the cluster the controller client carries the same HTTPOptions.
    from ray.serve.context import _get_global_client

    client = _get_global_client(raise_if_no_controller_running=False)
    if client is None:
        return None
    host: str | None = client.http_config.host
    return host


def check_serve_bind(settings: Settings, keys: ApiKeys | None = None) -> None:
    """Apply ``check_bind`` to the environment's host and to the Serve proxies' real host.

    ``serve.start`` keeps the options of a controller that is already running, and ``serve deploy``
    takes them from the config file, so ``ASGARD_API_HOST`` alone can say 127.0.0.1 while the proxy
    listens on 0.0.0.0.

    Raises:
        InvalidRequest: Either host is beyond loopback and no key is configured.
    """
    keys = keys or load_keys(settings)
    check_bind(settings, keys)
    real = serve_http_host()
    if real is not None:
        check_bind(settings, keys, host=real)


# --- the middleware --------------------------------------------------------------------------------


def host_allowed(value: str | None) -> bool:
    """Whether a ``Host`` header names loopback: ``127.0.0.1``, ``localhost`` or ``[::1]``, any port."""
    match = _HOST.fullmatch((value or "").strip().lower())
    return match is not None and match.group(1) in LOOPBACK_NAMES


async def _reply(send: Send, status: int, error: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"error": error, "detail": None}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class SecurityMiddleware:
    """Check the Host (keyless mode), authenticate, authorise by scope, and cap the request body."""

    def __init__(self, app: ASGIApp, keys: ApiKeys, max_body_bytes: int) -> None:
        self.app = app
        self.keys = keys
        self.max_body = max_body_bytes

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        method: str = scope.get("method", "GET")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}

        if not self.keys.enabled and not host_allowed(headers.get("host")):
            shown = (headers.get("host") or "")[:80]
            log.warning("refused Host %r on %s %s (keyless mode)", shown, method, path)
            await _reply(
                send,
                421,
                f"Host header {shown!r} is not allowed: without an API key the API only answers "
                "to Host 127.0.0.1, localhost or [::1] (with any port); set ASGARD_API_KEY to serve "
                "other names",
            )
            return

        if self.keys.enabled and path not in OPEN_PATHS:
            auth = headers.get("authorization", "")
            kind, _, token = auth.partition(" ")
            granted = self.keys.scope_of(token.strip()) if kind.lower() == "bearer" and token else None
            if granted is None:
                await _reply(
                    send,
                    401,
                    "missing or invalid API key; send 'Authorization: Bearer <key>'",
                    {"WWW-Authenticate": 'Bearer realm="asgard"'},
                )
                return
            mutating = method not in READ_METHODS and path not in READ_POSTS
            if mutating and granted != "write":
                await _reply(send, 403, f"this key is read-only; {method} {path} needs a write key")
                return

        length = headers.get("content-length")
        if length and length.strip().isdigit() and int(length) > self.max_body:
            await _reply(
                send,
                413,
                f"request body of {int(length)} bytes exceeds the {self.max_body}-byte limit "
                "(ASGARD_MAX_BODY_BYTES); for large entity sets use entities_source (Parquet on S3)",
            )
            return

        # Read the whole body here, up to the limit, whatever its framing (chunked has no length): an
        # error raised inside the app's own read would reach FastAPI as a 400 "error parsing the body".
        # A request that declares no body is not read at all: behind Serve's proxy each receive() is a
        # call back to the proxy, which a GET would otherwise pay for nothing.
        chunks: list[bytes] = []
        received = 0
        bodiless = "transfer-encoding" not in headers and (length or "0").strip() == "0"
        while not bodiless:
            message = await receive()
            if message["type"] != "http.request":  # the client went away before the body ended
                return
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_body:
                await _reply(
                    send,
                    413,
                    f"request body exceeds the {self.max_body}-byte limit (ASGARD_MAX_BODY_BYTES); "
                    "for large entity sets use entities_source (Parquet on S3)",
                )
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # after the body: http.disconnect, for streaming responses

        await self.app(scope, replay, send)
