"""The embedded S3 server keeps what it acknowledged: kill -9 right after a 2xx, restart, all there.

Each test runs ``python -m asgard_ray.local.s3server`` as a child process on a free port with a data
dir in ``tmp_path``, talks to it with boto3 as the platform does, kills it with SIGKILL (no chance to
save anything) and starts it again on the same folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from asgard_ray.local.s3server import DiskStore
from tests.conftest import free_port

pytestmark = pytest.mark.integration

BUCKET = "durable"


class S3Process:
    """One run of the S3 server on a fixed port and data dir."""

    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """The server's URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> S3Process:
        """Start the server and wait for its port (open only once the restore is done)."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "asgard_ray.local.s3server", "--port", str(self.port), "--data-dir", str(self.data_dir)],
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"S3 server exited: {self.log_path.read_text()}"
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise TimeoutError(f"S3 server port {self.port} did not open: {self.log_path.read_text()}")

    def kill9(self) -> None:
        """SIGKILL the server: nothing runs after this, no handler, no final save."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> int:
        """SIGTERM the server and return its exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def restart(self) -> S3Process:
        """Kill -9 and start again on the same folder and port."""
        self.kill9()
        return self.start()

    def client(self) -> Any:
        """A boto3 client for this server."""
        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id="test", aws_secret_access_key="test",
            region_name="us-east-1", config=Config(retries={"max_attempts": 1}),
        )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[S3Process]:
    """A running S3 server on an empty data dir; stopped at the end."""
    s3 = S3Process(tmp_path / "s3", tmp_path / "s3server.log").start()
    s3.client().create_bucket(Bucket=BUCKET)
    yield s3
    s3.stop()


def _keys(client: Any, bucket: str = BUCKET) -> set[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def test_acknowledged_writes_survive_kill9(server: S3Process, tmp_path: Path) -> None:
    s3 = server.client()
    s3.put_object(Bucket=BUCKET, Key="records/a.json", Body=b'{"a": 1}', ContentType="application/json",
                  Metadata={"owner": "team-a", "run_id": "r1"})
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(9 << 20) + b"tail")  # over boto3's 8 MiB threshold: a multipart upload
    s3.upload_file(str(big), BUCKET, "models/big.bin")
    s3.copy_object(Bucket=BUCKET, Key="records/copy.json", CopySource={"Bucket": BUCKET, "Key": "records/a.json"})
    s3.put_object_tagging(Bucket=BUCKET, Key="records/a.json", Tagging={"TagSet": [{"Key": "stage", "Value": "gold"}]})
    for key in ("tmp/1", "tmp/2", "tmp/3"):
        s3.put_object(Bucket=BUCKET, Key=key, Body=key.encode())
    s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "tmp/1"}, {"Key": "tmp/2"}]})
    s3.delete_object(Bucket=BUCKET, Key="tmp/3")
    s3.create_bucket(Bucket="second-bucket")
    s3.put_object(Bucket="second-bucket", Key="x", Body=b"x")
    before = {k: s3.head_object(Bucket=BUCKET, Key=k) for k in ("records/a.json", "models/big.bin", "records/copy.json")}

    server.restart()
    s3 = server.client()

    assert _keys(s3) == {"records/a.json", "models/big.bin", "records/copy.json"}
    assert _keys(s3, "second-bucket") == {"x"}
    assert s3.get_object(Bucket=BUCKET, Key="models/big.bin")["Body"].read() == big.read_bytes()
    assert s3.get_object(Bucket=BUCKET, Key="records/copy.json")["Body"].read() == b'{"a": 1}'
    for key, old in before.items():
        new = s3.head_object(Bucket=BUCKET, Key=key)
        for field in ("ETag", "ContentType", "ContentLength", "Metadata", "LastModified"):
            assert new[field] == old[field], (key, field)
    assert before["models/big.bin"]["ETag"].endswith('-2"')  # the multipart ETag, kept as is
    assert before["records/a.json"]["Metadata"] == {"owner": "team-a", "run_id": "r1"}
    tags = s3.get_object_tagging(Bucket=BUCKET, Key="records/a.json")["TagSet"]
    assert tags == [{"Key": "stage", "Value": "gold"}]
    store = DiskStore(server.data_dir)
    for gone in ("tmp/1", "tmp/2", "tmp/3"):
        assert not store.object_path(BUCKET, gone).exists()


def test_deleted_bucket_and_overwrite_survive_kill9(server: S3Process) -> None:
    s3 = server.client()
    s3.create_bucket(Bucket="short-lived")
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"v1")
    server.restart()
    s3 = server.client()
    assert s3.get_object(Bucket=BUCKET, Key="k")["Body"].read() == b"v1"
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"v2 after the restore")  # a write after the restore wins
    s3.delete_bucket(Bucket="short-lived")
    server.restart()
    s3 = server.client()
    assert s3.get_object(Bucket=BUCKET, Key="k")["Body"].read() == b"v2 after the restore"
    assert {b["Name"] for b in s3.list_buckets()["Buckets"]} == {BUCKET}
    assert not DiskStore(server.data_dir).bucket_dir("short-lived").exists()


def test_concurrent_writers_leave_disk_equal_to_memory(server: S3Process) -> None:
    s3 = server.client()

    def writer(n: int) -> None:
        for i in range(15):
            key = f"hot/{(n + i) % 3}"
            if i % 5 == 4:
                s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": key}]})
            else:
                s3.put_object(Bucket=BUCKET, Key=key, Body=f"writer {n} write {i}".encode() * (1 + 500 * (i % 3)))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(writer, range(8)))
    seen = {k: s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in _keys(s3)}
    server.restart()
    s3 = server.client()
    assert {k: s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in _keys(s3)} == seen


def test_port_opens_only_after_the_restore(server: S3Process) -> None:
    s3 = server.client()
    keys = {f"many/{i:04d}" for i in range(300)}
    for key in keys:
        s3.put_object(Bucket=BUCKET, Key=key, Body=key.encode())
    server.restart()  # returns as soon as the port accepts a connection
    s3 = server.client()
    assert _keys(s3) == keys  # the very first request already sees every object
    s3.put_object(Bucket=BUCKET, Key="many/0000", Body=b"new")
    server.restart()
    assert server.client().get_object(Bucket=BUCKET, Key="many/0000")["Body"].read() == b"new"


def test_corrupt_and_missing_files_are_skipped_and_logged(server: S3Process) -> None:
    s3 = server.client()
    for key in ("good", "truncated", "garbage", "bitflip"):
        s3.put_object(Bucket=BUCKET, Key=key, Body=key.encode() * 1000)
    server.kill9()
    store = DiskStore(server.data_dir)
    path = store.object_path(BUCKET, "truncated")
    path.write_bytes(path.read_bytes()[:-10])
    store.object_path(BUCKET, "garbage").write_bytes(b"\x00\xffnot an object file")
    raw = bytearray(store.object_path(BUCKET, "bitflip").read_bytes())
    raw[-1] ^= 0xFF
    store.object_path(BUCKET, "bitflip").write_bytes(bytes(raw))
    leftover = store.object_path(BUCKET, "good").parent / ".crashed-write.tmp"
    leftover.write_bytes(b"half a write")
    (store.bucket_dir("no-meta-here") / "ab").mkdir(parents=True)  # a bucket folder without metadata

    server.start()
    s3 = server.client()
    assert _keys(s3) == {"good"}
    assert s3.get_object(Bucket=BUCKET, Key="good")["Body"].read() == b"good" * 1000
    log = server.log_path.read_text()
    for key in ("truncated", "garbage", "bitflip"):
        assert f"skipped unreadable object file {store.object_path(BUCKET, key)}" in log
    assert "3 files skipped" in log
    assert not leftover.exists()
    s3.put_object(Bucket=BUCKET, Key="truncated", Body=b"rewritten")  # a bad key can be written again
    server.restart()
    assert server.client().get_object(Bucket=BUCKET, Key="truncated")["Body"].read() == b"rewritten"


def test_old_format_data_dir_is_migrated_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "old"
    (data_dir / "objects").mkdir(parents=True)
    entries = []
    for bucket, key, body in (("asgard", "a/b.parquet", b"parquet bytes"), ("asgard", "c.json", b"{}"),
                              ("asgard", "missing.bin", None)):
        name = hashlib.sha256(f"{bucket}/{key}".encode()).hexdigest()
        if body is not None:
            (data_dir / "objects" / name).write_bytes(body)
        entries.append({"bucket": bucket, "key": key, "file": name, "etag": '"x"'})
    (data_dir / "index.json").write_text(json.dumps({"buckets": ["asgard", "empty-bucket"], "objects": entries}))

    s3proc = S3Process(data_dir, tmp_path / "s3server.log").start()
    try:
        s3 = s3proc.client()
        assert _keys(s3, "asgard") == {"a/b.parquet", "c.json"}
        assert {b["Name"] for b in s3.list_buckets()["Buckets"]} == {"asgard", "empty-bucket"}
        assert not (data_dir / "index.json").exists()
        assert not any(p.is_file() for p in (data_dir / "objects").iterdir())  # old hash-named files gone
        assert "old-format object" in s3proc.log_path.read_text()  # the missing file, skipped and logged
        s3proc.restart()
        s3 = s3proc.client()
        assert s3.get_object(Bucket="asgard", Key="a/b.parquet")["Body"].read() == b"parquet bytes"
        assert _keys(s3, "asgard") == {"a/b.parquet", "c.json"}
    finally:
        s3proc.stop()


def test_sigterm_stops_promptly_with_nothing_to_save(server: S3Process) -> None:
    server.client().put_object(Bucket=BUCKET, Key="k", Body=b"v")
    assert server.stop() == 0
    assert "S3 server stopped" in server.log_path.read_text()
    server.start()
    assert server.client().get_object(Bucket=BUCKET, Key="k")["Body"].read() == b"v"
