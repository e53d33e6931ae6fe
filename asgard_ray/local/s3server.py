"""The embedded S3 server: moto's S3 on loopback, where a 2xx means the object is on local disk.

moto keeps objects in memory only. This module puts a WSGI layer around moto's own app that writes
every object a request created, replaced or removed through to ``<data_dir>/objects`` *before* the
response is sent: PUT, POST (multipart completion), CopyObject, DELETE, DeleteObjects, object
tagging, and bucket creation and removal. So an acknowledged write survives ``kill -9`` of the server
or a power cut, and there is no periodic sync (the server idles at ~0 CPU) and nothing to save on
SIGTERM.

Layout (one file per object, no global index)::

    objects/<bucket>/.bucket.json              bucket name, region, account, creation time
    objects/<bucket>/<h[:2]>/<h>.obj           h = sha256(key); a JSON header line, then the bytes

The header holds bucket, key, size, ETag, Last-Modified, content type and user metadata, storage
class, tags and checksum. A file is written to a temporary name, fsynced, renamed over the old one
and its directory fsynced, so a reader of the folder sees the old object or the new one, never a mix,
and data and metadata cannot disagree. Key names never reach the filesystem: only their hash does.

At start the folder is loaded into moto's backend in-process, and only then is the port opened, so a
client that waits for the port sees every object and cannot race the restore. Unreadable or corrupt
files (bad header, wrong size, MD5 mismatch) are logged and skipped. A data dir of the old format
(``index.json`` + hash-named files, from the 5-second sync) is migrated once.

Not persisted (as before): in-progress multipart uploads, non-current object versions, ACLs,
object-lock settings and bucket configuration (policy, CORS, lifecycle, versioning).

Run as ``python -m asgard_ray.local.s3server --port 9000 --data-dir .asgard/s3``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

__all__ = ["DiskStore", "WriteThroughApp", "install_hooks", "main", "serve"]

log = logging.getLogger("asgard.s3server")

MAGIC = b"ASGARD-S3-OBJECT 1\n"
_BUCKET_META = ".bucket.json"
_SAFE_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_OLD_NAME = re.compile(r"[0-9a-f]{64}")
_MAX_HEADER = 1 << 20
_CHUNK = 8 << 20

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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _mkdir(path: Path) -> None:
    """Create a directory (and parents) durably: each new entry's parent is fsynced."""
    if path.is_dir():
        return
    _mkdir(path.parent)
    try:
        path.mkdir()
    except FileExistsError:
        return
    _fsync_dir(path.parent)


def _write_atomic(path: Path, chunks: Iterable[bytes]) -> None:
    """Write a file under a temporary name, fsync it, rename it into place, fsync the directory."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb", buffering=0) as f:
            for chunk in chunks:
                f.write(chunk)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        if hasattr(chunks, "close"):  # a generator holding moto's key lock lets go of it now
            chunks.close()
    _fsync_dir(path.parent)


class DiskStore:
    """The on-disk copy of moto's buckets: save and remove objects, and load them back."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.root = data_dir / "objects"
        # striped locks: two requests on one key persist one after the other, each reading moto's
        # state under the lock, so the file always ends as the latest acknowledged state
        self._locks = [threading.Lock() for _ in range(64)]

    # --- paths -----------------------------------------------------------------------------------
    def bucket_dir(self, bucket: str) -> Path:
        """The folder of a bucket (its name when filesystem-safe, else a hash of it)."""
        if _SAFE_BUCKET.fullmatch(bucket) and ".." not in bucket:
            return self.root / bucket
        return self.root / f"_{hashlib.sha256(bucket.encode()).hexdigest()[:40]}"

    def object_path(self, bucket: str, key: str) -> Path:
        """The file of one object."""
        h = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        return self.bucket_dir(bucket) / h[:2] / f"{h}.obj"

    def _lock(self, *names: str) -> threading.Lock:
        return self._locks[hash(names) % len(self._locks)]

    # --- writing ---------------------------------------------------------------------------------
    def persist(self, changes: Iterable[tuple[Any, ...]]) -> None:
        """Bring the disk in line with moto's memory for every bucket and key a request changed."""
        items = list(changes)
        for kind, backend, bucket, *_ in sorted(items, key=lambda c: c[0] != "bucket"):
            if kind == "bucket":  # buckets first: a CreateBucket has no key
                self.save_bucket(backend, bucket)
        for kind, backend, bucket, *rest in items:
            if kind == "key":
                self.save_key(backend, bucket, rest[0])

    def save_bucket(self, backend: Any, bucket: str) -> None:
        """Write (or, when moto no longer has it, remove) a bucket's folder."""
        with self._lock("bucket", bucket):
            live = backend.buckets.get(bucket)
            folder = self.bucket_dir(bucket)
            if live is None:
                if folder.exists():
                    shutil.rmtree(folder)
                    _fsync_dir(self.root)
                    log.info("bucket %s removed from disk", bucket)
                return
            meta = {"bucket": bucket, "region": live.region_name, "account_id": backend.account_id,
                    "partition": backend.region_name, "created": live.creation_date.isoformat()}
            if (folder / _BUCKET_META).exists():
                return
            _mkdir(folder)
            _write_atomic(folder / _BUCKET_META, [json.dumps(meta).encode()])

    def save_key(self, backend: Any, bucket: str, key: str) -> None:
        """Write the current version of one object to disk, or remove its file if moto has none."""
        from moto.s3.models import FakeKey

        path = self.object_path(bucket, key)
        if bucket in backend.buckets and not (self.bucket_dir(bucket) / _BUCKET_META).exists():
            self.save_bucket(backend, bucket)  # before the key lock: locks are never nested
        with self._lock("key", bucket, key):
            for _ in range(5):
                live = backend.buckets.get(bucket)
                obj = live.keys.get(key) if live is not None else None
                if not isinstance(obj, FakeKey):  # gone, or a delete marker in a versioned bucket
                    if path.exists():
                        path.unlink()
                        _fsync_dir(path.parent)
                    return
                _mkdir(path.parent)
                try:
                    _write_atomic(path, self._encode(backend, obj))
                    return
                except ValueError:  # replaced (and its buffer closed) by a newer write: take that one
                    continue
            raise RuntimeError(f"s3://{bucket}/{key} kept changing while being saved")

    @staticmethod
    def _encode(backend: Any, obj: Any) -> Iterable[bytes]:
        header = {
            "bucket": obj.bucket_name, "key": obj.name, "size": obj.size, "etag": obj.etag.strip('"'),
            "last_modified": obj.last_modified.isoformat(), "metadata": dict(obj.metadata),
            "storage_class": obj.storage_class, "tags": backend.tagger.get_tag_dict_for_resource(obj.arn),
            "encryption": obj.encryption, "kms_key_id": obj.kms_key_id,
            "website_redirect_location": obj.website_redirect_location,
            "checksum": [obj.checksum_algorithm, obj.checksum_value, obj.checksum_type],
        }
        yield MAGIC + json.dumps(header).encode() + b"\n"
        with obj.lock:  # moto's own lock around its value buffer; also raises ValueError once closed
            buf = obj._value_buffer
            buf.seek(0)
            while chunk := buf.read(_CHUNK):
                yield chunk

    # --- loading ---------------------------------------------------------------------------------
    def restore(self) -> tuple[int, int]:
        """Load every bucket and object into moto's backend; return (objects loaded, files skipped)."""
        self.root.mkdir(parents=True, exist_ok=True)
        loaded = skipped = 0
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
            backend, bucket = self._restore_bucket(folder)
            if backend is None:
                skipped += 1
                continue
            for path in sorted(folder.glob("*/*")):
                if path.name.startswith(".") and path.name.endswith(".tmp"):
                    path.unlink(missing_ok=True)  # a write that crashed before its rename: never acknowledged
                    continue
                try:
                    self._restore_object(backend, bucket, path)
                    loaded += 1
                except Exception as exc:
                    skipped += 1
                    log.warning("skipped unreadable object file %s: %s", path, exc)
        loaded += self._migrate_old_format()
        return loaded, skipped

    def _restore_bucket(self, folder: Path) -> tuple[Any, str]:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        try:
            meta = json.loads((folder / _BUCKET_META).read_text())
            name = meta["bucket"]
        except (OSError, ValueError, KeyError) as exc:
            if not _SAFE_BUCKET.fullmatch(folder.name):
                log.warning("skipped bucket folder %s: unreadable %s (%s)", folder, _BUCKET_META, exc)
                return None, ""
            meta, name = {}, folder.name
            log.warning("bucket folder %s has no readable %s; restoring it as bucket %s", folder, _BUCKET_META, name)
        backend = s3_backends[meta.get("account_id", DEFAULT_ACCOUNT_ID)][meta.get("partition", "aws")]
        if name not in backend.buckets:
            backend.create_bucket(name, meta.get("region", "us-east-1"))
        return backend, name

    @staticmethod
    def _read(path: Path) -> tuple[dict[str, Any], bytes]:
        with path.open("rb") as f:
            if f.readline(len(MAGIC) + 1) != MAGIC:
                raise ValueError("not an object file (bad magic)")
            header = json.loads(f.readline(_MAX_HEADER))
            body = f.read()
        if len(body) != header["size"]:
            raise ValueError(f"size {len(body)} != {header['size']} (truncated)")
        if "-" not in header["etag"] and hashlib.md5(body).hexdigest() != header["etag"]:
            raise ValueError("MD5 does not match the ETag (corrupt)")
        return header, body

    def _restore_object(self, backend: Any, bucket: str, path: Path) -> None:
        header, body = self._read(path)
        if header["bucket"] != bucket or self.object_path(bucket, header["key"]) != path:
            raise ValueError(f"header names s3://{header['bucket']}/{header['key']}, not this file")
        algorithm, checksum, checksum_type = header.get("checksum") or [None, None, None]
        obj = backend.put_object(
            bucket, header["key"], body, storage=header.get("storage_class"), etag=header["etag"],
            encryption=header.get("encryption"), kms_key_id=header.get("kms_key_id"),
            checksum_value=checksum, disable_notification=True,
        )
        obj.set_metadata(dict(header.get("metadata") or {}))
        obj.last_modified = dt.datetime.fromisoformat(header["last_modified"])
        obj.website_redirect_location = header.get("website_redirect_location")
        obj.checksum_algorithm, obj.checksum_type = algorithm, checksum_type
        if header.get("tags"):
            backend.tagger.tag_resource(obj.arn, backend.tagger.convert_dict_to_tags_input(header["tags"]))

    def _migrate_old_format(self) -> int:
        """Move a data dir of the old format (``index.json`` + hash-named files) to this one, once."""
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        index = self.data_dir / "index.json"
        if not index.exists():
            return 0
        backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        try:
            saved = json.loads(index.read_text())
        except (OSError, ValueError) as exc:
            log.warning("old-format index %s unreadable (%s); nothing migrated", index, exc)
            return 0
        moved = 0
        for bucket in saved.get("buckets", []):
            if bucket not in backend.buckets:
                backend.create_bucket(bucket, "us-east-1")
            self.save_bucket(backend, bucket)
        for entry in saved.get("objects", []):
            try:
                body = (self.root / entry["file"]).read_bytes()
                if entry["bucket"] not in backend.buckets:
                    backend.create_bucket(entry["bucket"], "us-east-1")
                backend.put_object(entry["bucket"], entry["key"], body, disable_notification=True)
                self.save_key(backend, entry["bucket"], entry["key"])
                moved += 1
            except Exception as exc:
                log.warning("old-format object %s skipped: %s", entry, exc)
        # commit point: only once every object is in the new layout does the old index go
        index.unlink()
        _fsync_dir(self.data_dir)
        for stale in self.root.iterdir():
            if stale.is_file() and (_OLD_NAME.fullmatch(stale.name) or stale.name.endswith(".tmp")):
                stale.unlink()
        (self.data_dir / ".index.json.tmp").unlink(missing_ok=True)
        log.info("migrated %d objects from the old format in %s", moved, self.data_dir)
        return moved


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
    log.info("S3 server on %s:%d: restored %d objects from %s in %.1fs (%d files skipped)",
             host, port, loaded, store.root, time.monotonic() - started, skipped)

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
