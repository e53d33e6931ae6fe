"""The embedded S3 server: moto's S3 on loopback, where a 2xx means the object is on local disk.

moto keeps objects in memory only. A WSGI layer around moto's own app writes every object that a
request created, replaced or removed through to ``<data_dir>/objects`` (see ``s3disk``) *before* the
status line is sent: PUT, POST (multipart completion), CopyObject, DELETE, DeleteObjects, object
tagging, and bucket creation and removal. So an acknowledged write survives ``kill -9`` of the server
or a power cut; there is no periodic sync (the server idles at ~0 CPU) and nothing to save on SIGTERM.

At start the folder is loaded into moto's backend in-process, and only then is the port opened: a
client that waits for the port sees every object and cannot race the restore.

Not persisted (as before): in-progress multipart uploads, non-current object versions, ACLs,
object-lock settings and bucket configuration (policy, CORS, lifecycle, versioning).

Run as ``python -m asgard_ray.local.s3server --port 9000 --data-dir .asgard/s3``.
"""

from __future__ import annotations

import argparse
import functools
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from asgard_ray.local.s3disk import DiskStore

__all__ = ["DiskStore", "WriteThroughApp", "install_hooks", "main", "serve"]

log = logging.getLogger("asgard.s3server")


# What the current request changed: {("key", backend, bucket, key) | ("bucket", backend, bucket): None}
_touched = threading.local()


def _note(item: tuple[Any, ...]) -> None:
    changes = getattr(_touched, "changes", None)
    if changes is not None:  # None outside a request (restore, migration)
        changes[item] = None


def install_hooks() -> None:
    """Make moto's S3 backend report which buckets and keys a request changes (idempotent).

    Hooking the backend rather than parsing URLs covers every route to a change (path- or
    virtual-host-style, CopyObject, multipart completion, DeleteObjects) with the names moto resolved.
    """
    from moto.s3.models import S3Backend

    if getattr(S3Backend, "_asgard_hooked", False):
        return
    hooks: dict[str, Callable[..., tuple[str, ...]]] = {
        "put_object": lambda bucket_name, key_name, *a, **k: ("key", bucket_name, key_name),
        "delete_object": lambda bucket_name, key_name, *a, **k: ("key", bucket_name, key_name),
        "put_object_tagging": lambda key, *a, **k: ("key", key.bucket_name, key.name),
        "delete_object_tagging": lambda bucket_name, key_name, *a, **k: ("key", bucket_name, key_name),
        "create_bucket": lambda bucket_name, *a, **k: ("bucket", bucket_name),
        "delete_bucket": lambda bucket_name, *a, **k: ("bucket", bucket_name),
    }
    for name, what in hooks.items():
        original = getattr(S3Backend, name)

        def wrapper(self: Any, *args: Any, _orig: Any = original, _what: Any = what, **kwargs: Any) -> Any:
            try:
                return _orig(self, *args, **kwargs)
            finally:  # also on error: a half-applied change must reach the disk too
                try:
                    kind, *names = _what(*args, **kwargs)
                    _note((kind, self, *names))
                except (TypeError, AttributeError):  # a call moto rejected before changing anything
                    pass

        setattr(S3Backend, name, functools.wraps(original)(wrapper))
    S3Backend._asgard_hooked = True  # type: ignore[attr-defined]


class WriteThroughApp:
    """WSGI middleware: run moto's app, write what the request changed to disk, then answer."""

    def __init__(self, app: Callable[..., Iterable[bytes]], store: DiskStore) -> None:
        self.app = app
        self.store = store
        self._busy = 0
        self._idle = threading.Condition()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Handle one request; the status line leaves only after the write-through."""
        captured: list[Any] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            captured[:] = [status, headers, exc_info]
            return lambda data: None  # moto (Flask) never uses the legacy write() callable

        _touched.changes = {}
        with self._idle:
            self._busy += 1
        try:
            try:
                body = self.app(environ, capture)
            finally:
                changes, _touched.changes = _touched.changes, None
            if changes:
                if not captured:  # a lazy app: run it to the end before the write-through
                    body = list(body)
                try:
                    self.store.persist(changes)
                except Exception:
                    log.exception("write-through failed for %s %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
                    if hasattr(body, "close"):
                        body.close()
                    msg = b"<Error><Code>InternalError</Code><Message>the S3 server could not write to its disk</Message></Error>"
                    start_response("500 Internal Server Error", [("Content-Type", "application/xml"), ("Content-Length", str(len(msg)))])
                    return [msg]
            start_response(*captured)
            return body
        finally:
            with self._idle:
                self._busy -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is in flight (for a clean SIGTERM); return whether it is so."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)


def serve(port: int, data_dir: Path, host: str = "127.0.0.1") -> None:
    """Restore ``data_dir`` into moto, then serve S3 on ``host:port`` until SIGTERM/SIGINT."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    install_hooks()
    store = DiskStore(data_dir.absolute())
    started = time.monotonic()
    loaded, skipped = store.restore()
    app = WriteThroughApp(DomainDispatcherApplication(create_backend_app), store)
    # the port opens here, after the restore: waiting for the port is waiting for the restore
    server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
    log.info(
        "S3 server on %s:%d: restored %d objects from %s in %.1fs (%d files skipped)",
        host,
        port,
        loaded,
        store.root,
        time.monotonic() - started,
        skipped,
    )

    def _stop(signum: int, _frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    server.serve_forever()
    app.wait_idle(timeout=10)  # every acknowledged write is already on disk; let in-flight ones finish
    server.server_close()
    log.info("S3 server stopped (every acknowledged write is in %s)", store.root)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and serve."""
    parser = argparse.ArgumentParser(description="Embedded S3 server with write-through to a folder.")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    serve(args.port, args.data_dir, args.host)


if __name__ == "__main__":
    main()
