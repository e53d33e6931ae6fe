"""The embedded S3 server's folder: one file per object, written atomically, loaded back at start.

Layout (no global index)::

    <data_dir>/objects/<bucket>/.bucket.json       bucket name, region, account, creation time
    <data_dir>/objects/<bucket>/<h[:2]>/<h>.obj    h = sha256(key): a magic line, a JSON header line, the bytes

The header holds bucket, key, size, ETag, Last-Modified, content type and user metadata, storage
class, tags and checksum. A file is written under a temporary name, fsynced, renamed over the old
one, and its directory fsynced: the folder holds the old object or the new one, never a mix, and data
and metadata cannot disagree. Key names never reach the filesystem, only their hash (bucket names
only when they are plain DNS names).

Loading skips, and logs, any file it cannot trust (bad magic or header, wrong size, MD5 that does
not match a single-part ETag) and removes temporary files of writes that never finished (never
acknowledged). A data dir of the old format (``index.json`` + hash-named files, from the 5-second
sync) is migrated once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import shutil
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from asgard_ray.durable import fsync_dir, make_dirs, write_atomic

__all__ = ["DiskStore"]

log = logging.getLogger("asgard.s3server")

MAGIC = b"ASGARD-S3-OBJECT 1\n"
_BUCKET_META = ".bucket.json"
_SAFE_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_OLD_NAME = re.compile(r"[0-9a-f]{64}")
_MAX_HEADER = 1 << 20
_CHUNK = 8 << 20


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
                    fsync_dir(self.root)
                    log.info("bucket %s removed from disk", bucket)
                return
            meta = {
                "bucket": bucket,
                "region": live.region_name,
                "account_id": backend.account_id,
                "partition": backend.region_name,
                "created": live.creation_date.isoformat(),
            }
            if (folder / _BUCKET_META).exists():
                return
            make_dirs(folder)
            write_atomic(folder / _BUCKET_META, [json.dumps(meta).encode()])

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
                        fsync_dir(path.parent)
                    return
                make_dirs(path.parent)
                try:
                    write_atomic(path, self._encode(backend, obj))
                    return
                except ValueError:  # replaced (and its buffer closed) by a newer write: take that one
                    continue
            raise RuntimeError(f"s3://{bucket}/{key} kept changing while being saved")

    @staticmethod
    def _encode(backend: Any, obj: Any) -> Iterable[bytes]:
        header = {
            "bucket": obj.bucket_name,
            "key": obj.name,
            "size": obj.size,
            "etag": obj.etag.strip('"'),
            "last_modified": obj.last_modified.isoformat(),
            "metadata": dict(obj.metadata),
            "storage_class": obj.storage_class,
            "tags": backend.tagger.get_tag_dict_for_resource(obj.arn),
            "encryption": obj.encryption,
            "kms_key_id": obj.kms_key_id,
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
            bucket,
            header["key"],
            body,
            storage=header.get("storage_class"),
            etag=header["etag"],
            encryption=header.get("encryption"),
            kms_key_id=header.get("kms_key_id"),
            checksum_value=checksum,
            disable_notification=True,
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
        fsync_dir(self.data_dir)
        for stale in self.root.iterdir():
            if stale.is_file() and (_OLD_NAME.fullmatch(stale.name) or stale.name.endswith(".tmp")):
                stale.unlink()
        (self.data_dir / ".index.json.tmp").unlink(missing_ok=True)
        log.info("migrated %d objects from the old format in %s", moved, self.data_dir)
        return moved
