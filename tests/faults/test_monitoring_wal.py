"""Fault: the monitoring write-ahead log. Writes acknowledged while S3 is down survive ``kill -9`` of the writer.

A real S3 server process (moto with write-through to disk), a real writer process killed with
SIGKILL, and a new owner of the same log that uploads what the dead one acknowledged, once and only once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from asgard_ray.config import Settings
from asgard_ray.local.bootstrap import prepare_storage
from asgard_ray.monitoring.schemas import HistoryRequest, MonitoringRecord, MonitoringRequest
from asgard_ray.monitoring.state import MonitoringState
from asgard_ray.monitoring.wal import open_wal
from asgard_ray.storage import list_files, read_bytes
from tests.conftest import free_port, isolated_settings
from tests.integration.test_s3server import S3Process

pytestmark = pytest.mark.integration

WRITER = """
import sys, time
from pathlib import Path
from asgard_ray.config import Settings
from asgard_ray.monitoring.schemas import MonitoringRequest
from asgard_ray.monitoring.state import MonitoringState

state = MonitoringState(Settings(), prefix=sys.argv[1], mirror=False, compact=False, wal_dir=Path(sys.argv[2]))
print("ready", flush=True)
sys.stdin.readline()  # the test has killed the S3 server
for i in range(int(sys.argv[3])):
    request = MonitoringRequest(model_name="wal_model", model_version="1", metric_type="custom", metrics={"i": float(i)})
    print("acked", state.log(request).monitoring_id, flush=True)
print("done", flush=True)
time.sleep(600)  # killed long before: the uploads it started can never finish
"""


@pytest.fixture
def s3_settings(tmp_path: Path) -> Iterator[tuple[S3Process, Settings]]:
    """A private S3 server process and Settings pointing at it."""
    s3 = S3Process(tmp_path / "s3", tmp_path / "s3server.log").start()
    try:
        settings = isolated_settings(
            asgard_home=tmp_path / "home", s3_endpoint_url=s3.endpoint, asgard_s3_port=s3.port,
            mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}",
        )
        prepare_storage(settings)
        yield s3, settings
    finally:
        s3.stop()


def _stored_ids(settings: Settings, prefix: str) -> list[str]:
    """Every record id in the store's objects on S3 itself (duplicates kept)."""
    return [
        json.loads(line)["monitoring_id"]
        for path in list_files(settings, settings.state_uri("monitoring", prefix, "records"))
        if path.endswith(".jsonl")
        for line in read_bytes(settings, f"s3://{path}").splitlines()
        if line.strip()
    ]


def test_writes_acknowledged_while_s3_is_down_survive_kill9_of_the_writer(
    s3_settings: tuple[S3Process, Settings], tmp_path: Path
) -> None:
    s3, settings = s3_settings
    prefix, wal_dir, n = f"monitoring-{uuid.uuid4().hex[:8]}", tmp_path / "wal", 20
    env = {**os.environ, **settings.to_env(), **settings.worker_env()}
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, prefix, str(wal_dir), str(n)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )
    try:
        assert writer.stdout is not None and writer.stdin is not None
        assert writer.stdout.readline().strip() == "ready"
        s3.kill9()  # from here on no PUT can succeed
        writer.stdin.write("go\n")
        writer.stdin.flush()
        acked: list[str] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = writer.stdout.readline().split()
            if not line or line[0] == "done":
                break
            acked.append(line[1])
        assert len(acked) == n, f"the writer acknowledged {len(acked)} of {n} records with S3 down"
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait(timeout=30)

    s3.start()  # same folder, same port: nothing of the records is on it
    assert _stored_ids(settings, prefix) == []

    heir = MonitoringState(settings, prefix=prefix, mirror=False, compact=False, wal_dir=wal_dir)
    try:
        assert heir.stats()["acknowledged_by"] == "wal"
        history = heir.history(HistoryRequest(model_name="wal_model", limit=1000))
        assert sorted(r.monitoring_id for r in history.records) == sorted(acked)  # answered before the upload
        assert heir.flush_uploads(60)
        assert heir.stats()["upload_backlog"] == 0
    finally:
        heir.close()
    stored = _stored_ids(settings, prefix)
    assert sorted(stored) == sorted(acked)  # on S3 itself, each exactly once
    assert not list(wal_dir.glob("*/*.jsonl"))  # every log file deleted once its records landed

    plain = MonitoringState(settings, prefix=prefix, mirror=False, compact=False)  # no log: S3 alone
    try:
        assert plain.count() == n
    finally:
        plain.close()


def test_replay_skips_records_already_on_s3(s3_settings: tuple[S3Process, Settings], tmp_path: Path) -> None:
    """A crash after the PUT and before the log file's deletion leaves records that are on S3 too."""
    _, settings = s3_settings
    prefix, wal_dir = f"monitoring-{uuid.uuid4().hex[:8]}", tmp_path / "wal"
    first = MonitoringState(settings, prefix=prefix, mirror=False, compact=False)  # acknowledges after the PUT
    try:
        stored = [first.log(MonitoringRequest(model_name="m", model_version="1", metric_type="custom", metrics={"i": i})) for i in range(5)]
        records = [first.get(r.monitoring_id) for r in stored]
    finally:
        first.close()
    extra = records[0].model_copy(update={"monitoring_id": "mon_not_uploaded_0001"})
    wal = open_wal(wal_dir, settings.state_uri("monitoring", prefix, "records"))
    assert wal is not None
    wal.append([*records, extra])  # what the crashed owner's log still held
    wal.close()

    heir = MonitoringState(settings, prefix=prefix, mirror=False, compact=False, wal_dir=wal_dir)
    try:
        assert heir.count() == 6
        assert heir.flush_uploads(60)
    finally:
        heir.close()
    ids = _stored_ids(settings, prefix)
    assert sorted(ids) == sorted([r.monitoring_id for r in records] + [extra.monitoring_id])


def test_a_second_live_owner_acknowledges_after_the_put(s3_settings: tuple[S3Process, Settings], tmp_path: Path) -> None:
    _, settings = s3_settings
    prefix, wal_dir = f"monitoring-{uuid.uuid4().hex[:8]}", tmp_path / "wal"
    owner = MonitoringState(settings, prefix=prefix, mirror=False, compact=False, wal_dir=wal_dir)
    second = MonitoringState(settings, prefix=prefix, mirror=False, compact=False, wal_dir=wal_dir)
    try:
        assert owner.stats()["acknowledged_by"] == "wal"
        assert second.stats()["acknowledged_by"] == "s3"  # the log has one owner at a time
        mid = second.log(MonitoringRequest(model_name="m", model_version="1", metric_type="custom", metrics={"x": 1.0})).monitoring_id
        assert _stored_ids(settings, prefix) == [mid]  # on S3 when acknowledged
    finally:
        second.close()
        owner.close()


# --- the segment file itself: no S3 needed --------------------------------------------------------

def _record(i: int) -> MonitoringRecord:
    return MonitoringRecord(
        monitoring_id=f"mon_seg_{i:04d}", model_name="seg_model", model_version="1", metric_type="custom",
        metrics={"i": float(i)}, alert_triggered=False, alerts=[], timestamp="2026-11-28T00:00:00Z",
    )


def _segments(root: Path) -> list[Path]:
    return sorted(root.glob("*/*.jsonl"))


def test_groups_append_to_one_segment_that_is_deleted_once_drained(tmp_path: Path) -> None:
    wal = open_wal(tmp_path, "s3://asgard/seg")
    assert wal is not None
    try:
        groups = [[_record(3 * g + k) for k in range(3)] for g in range(3)]
        for group in groups:
            wal.append(group)
        (segment,) = _segments(tmp_path)  # one file, appended to, not one file per group
        assert len(segment.read_bytes().splitlines()) == 9
        assert wal.pending == 9
        wal.uploaded([r.monitoring_id for r in groups[0] + groups[1]])
        assert _segments(tmp_path) == [segment]  # three records still wait in it
        wal.uploaded([r.monitoring_id for r in groups[2]])
        assert _segments(tmp_path) == [] and wal.pending == 0
        wal.append([_record(100)])
        (fresh,) = _segments(tmp_path)
        assert fresh != segment
    finally:
        wal.close()
    (kept,) = _segments(tmp_path)  # the waiting record's segment outlives its owner
    heir = open_wal(tmp_path, "s3://asgard/seg")
    assert heir is not None
    try:
        assert [r.monitoring_id for r in heir.replay()] == ["mon_seg_0100"]
        heir.uploaded(["mon_seg_0100"])
        assert not kept.exists()
    finally:
        heir.close()


def test_replay_drops_a_torn_last_line_and_keeps_a_damaged_line_aside(tmp_path: Path) -> None:
    wal = open_wal(tmp_path, "s3://asgard/torn")
    assert wal is not None
    wal.append([_record(1)])
    wal.append([_record(2)])
    wal.close()
    (segment,) = _segments(tmp_path)
    first, second = segment.read_bytes().splitlines()
    # damage from outside between the two lines, and a crash in the middle of a third append
    segment.write_bytes(first + b"\n" + b'{"monitoring_id": "mon_broken"\n' + second + b"\n" + _record(3).model_dump_json().encode()[:40])

    heir = open_wal(tmp_path, "s3://asgard/torn")
    assert heir is not None
    try:
        assert [r.monitoring_id for r in heir.replay()] == ["mon_seg_0001", "mon_seg_0002"]  # the torn third never counted
        assert (segment.parent / "bad" / segment.name).read_bytes() == b'{"monitoring_id": "mon_broken"\n'
        heir.uploaded(["mon_seg_0001", "mon_seg_0002"])
        assert _segments(tmp_path) == []
    finally:
        heir.close()


FULL_DISK = """
import resource, signal, sys
from pathlib import Path
from asgard_ray.monitoring.schemas import MonitoringRecord
from asgard_ray.monitoring.wal import open_wal

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), resource.RLIM_INFINITY))
wal = open_wal(Path(sys.argv[1]), "s3://asgard/full")
for i in range(1000):
    record = MonitoringRecord(
        monitoring_id=f"mon_full_{i:04d}", model_name="full_model", model_version="1", metric_type="custom",
        metrics={"i": float(i)}, alert_triggered=False, alerts=[], timestamp="2026-11-28T00:00:00Z",
    )
    try:
        wal.append([record])
    except OSError as exc:
        print("failed", record.monitoring_id, exc.errno, flush=True)
        break
    print("acked", record.monitoring_id, flush=True)
"""


def test_an_append_that_fails_on_a_full_disk_is_cut_back_and_never_replayed(tmp_path: Path) -> None:
    """A real short write (the file size limit of the process), not a mock: the failed group leaves no trace."""
    out = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(tmp_path), "4000"], capture_output=True, text=True, timeout=120, check=True,
    ).stdout.split("\n")
    acked = [line.split()[1] for line in out if line.startswith("acked")]
    failed = [line.split() for line in out if line.startswith("failed")]
    assert acked and len(failed) == 1, out
    (segment,) = _segments(tmp_path)
    assert segment.read_bytes().endswith(b"\n")  # cut back to the end of the last acknowledged append
    heir = open_wal(tmp_path, "s3://asgard/full")
    assert heir is not None
    try:
        assert [r.monitoring_id for r in heir.replay()] == acked
    finally:
        heir.close()
