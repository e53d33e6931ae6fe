"""The embedded S3 server: moto's server on loopback, with its objects persisted to disk.

moto keeps objects in memory only, so this wrapper restores every bucket and object from
``<data_dir>`` at start, syncs changes back every few seconds (only what changed, by ETag), and
syncs once more on SIGTERM/SIGINT. ``asgard down`` sends SIGTERM, so ``down`` then ``up`` keeps
every object; a ``kill -9`` loses at most the last sync interval.

Run as ``python -m asgard_ray.local.s3server --port 9000 --data-dir .asgard/s3``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import signal
import threading
from pathlib import Path

import boto3
from moto.server import ThreadedMotoServer

log = logging.getLogger("asgard.s3server")


class PersistentS3:
    """Mirror the buckets of an S3 endpoint to a folder, and back."""

    def __init__(self, endpoint: str, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.objects_dir = data_dir / "objects"
        self.index_path = data_dir / "index.json"
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="asgard",
            aws_secret_access_key="asgard-secret",
            region_name="us-east-1",
        )
        self.index: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _file_name(bucket: str, key: str) -> str:
        return hashlib.sha256(f"{bucket}/{key}".encode()).hexdigest()

    def restore(self) -> int:
        """Create the saved buckets and upload the saved objects; return the object count."""
        self.objects_dir.mkdir(parents=True, exist_ok=True)
        if not self.index_path.exists():
            return 0
        saved = json.loads(self.index_path.read_text())
        for bucket in saved.get("buckets", []):
            self.client.create_bucket(Bucket=bucket)
        count = 0
        for entry in saved.get("objects", []):
            body = (self.objects_dir / entry["file"]).read_bytes()
            self.client.put_object(Bucket=entry["bucket"], Key=entry["key"], Body=body)
            head = self.client.head_object(Bucket=entry["bucket"], Key=entry["key"])
            self.index[f"{entry['bucket']}/{entry['key']}"] = {**entry, "etag": head["ETag"]}
            count += 1
        return count

    def sync(self) -> int:
        """Write new or changed objects to disk and drop deleted ones; return files written."""
        with self._lock:
            buckets = [b["Name"] for b in self.client.list_buckets().get("Buckets", [])]
            seen: dict[str, dict[str, str]] = {}
            written = 0
            for bucket in buckets:
                paginator = self.client.get_paginator("list_objects_v2")
                for page in paginator.paginate(Bucket=bucket):
                    for obj in page.get("Contents", []):
                        ident = f"{bucket}/{obj['Key']}"
                        old = self.index.get(ident)
                        if old and old["etag"] == obj["ETag"]:
                            seen[ident] = old
                            continue
                        body = self.client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
                        name = self._file_name(bucket, obj["Key"])
                        tmp = self.objects_dir / f".{name}.tmp"
                        tmp.write_bytes(body)
                        os.replace(tmp, self.objects_dir / name)
                        seen[ident] = {"bucket": bucket, "key": obj["Key"], "file": name, "etag": obj["ETag"]}
                        written += 1
            for ident, entry in self.index.items():
                if ident not in seen:
                    (self.objects_dir / entry["file"]).unlink(missing_ok=True)
            changed = written or set(seen) != set(self.index)
            self.index = seen
            if changed:
                tmp = self.data_dir / ".index.json.tmp"
                tmp.write_text(json.dumps({"buckets": buckets, "objects": list(seen.values())}))
                os.replace(tmp, self.index_path)
            return written


def serve(port: int, data_dir: Path, interval: float = 5.0) -> None:
    """Run the server until SIGTERM/SIGINT, persisting to ``data_dir``."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    store = PersistentS3(f"http://127.0.0.1:{port}", data_dir)
    restored = store.restore()
    log.info("S3 server on 127.0.0.1:%d, restored %d objects from %s", port, restored, data_dir)
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    while not stop.wait(interval):
        try:
            store.sync()
        except Exception:  # keep serving; the next sync retries
            log.exception("periodic S3 sync failed")
    store.sync()
    server.stop()
    log.info("S3 server stopped; state saved to %s", data_dir)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and serve."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--interval", type=float, default=5.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    serve(args.port, args.data_dir, args.interval)


if __name__ == "__main__":
    main()
