"""The storage path resolver: every traversal, scheme and encoding trick is refused before any I/O."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from asgard_ray.config import Settings
from asgard_ray.errors import InvalidRequest
from asgard_ray.scoring.sink import classify, is_job_file
from asgard_ray.storage import Access, normalise_key, resolve_location
from asgard_ray.storage.paths import confine_local


@pytest.fixture
def settings() -> Settings:
    return Settings(s3_bucket="asgard", asgard_output_buckets=["asgard", "my-bucket/predictions"])


def _w(settings: Settings, raw: object) -> str:
    return resolve_location(settings, raw, access=Access.WRITE, field="output_path").uri


def _r(settings: Settings, raw: object) -> str:
    return resolve_location(settings, raw, access=Access.READ, field="entities_source.path").uri


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("s3://my-bucket/predictions/batch.parquet", "s3://my-bucket/predictions/batch.parquet"),
        ("s3://my-bucket/predictions//a///b/", "s3://my-bucket/predictions/a/b"),
        ("s3://my-bucket/predictions/./a/../b", "s3://my-bucket/predictions/b"),
        ("  s3://asgard/out/x  ", "s3://asgard/out/x"),
        ("s3a://asgard/out/x", "s3://asgard/out/x"),
        ("s3://asgard/out%2Fsub", "s3://asgard/out/sub"),
        ("S3://asgard/out", "s3://asgard/out"),
    ],
)
def test_allowed_writes_are_normalised(settings: Settings, raw: str, expected: str) -> None:
    assert _w(settings, raw) == expected


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ("s3://my-bucket/predictions/../secrets/x", "not an allowed location"),  # climbs out of the prefix
        ("s3://my-bucket/predictions/%2e%2e/secrets", "not an allowed location"),
        ("s3://my-bucket/predictions/%2E%2E%2Fsecrets", "not an allowed location"),
        ("s3://my-bucket/predictions/%252e%252e/secrets", "not an allowed location"),  # double-encoded
        ("s3://asgard/../../etc/passwd", "climbs above the bucket"),
        ("s3://asgard/a/../../b", "climbs above the bucket"),
        ("s3://asgard/%2e%2e/x", "climbs above the bucket"),
        ("s3://asgard/\uff0e\uff0e\uff0fx", "climbs above the bucket"),  # fullwidth ../ folds (NFKC) to ../
        ("s3://asgard/a\u200b/b", "invisible"),  # zero-width space
        ("s3://asgard/a\u202e/b", "invisible"),  # right-to-left override
        ("s3://asgard/a%00b", "control"),
        ("s3://asgard/a\nb", "control"),
        ("s3://asgard/..\\..\\x", "backslash"),
        ("s3://other-bucket/x", "not an allowed location"),
        ("s3://my-bucket/other/x", "not an allowed location"),
        ("s3://my-bucket/predictionsX/x", "not an allowed location"),
        ("s3://asgard", "whole bucket"),
        ("s3://asgard/", "whole bucket"),
        ("s3://asgard/./", "whole bucket"),
        ("s3:///asgard/x", "names no bucket"),
        ("s3://ASGARD/x", "not a valid bucket"),
        ("s3://asgard/jobs/batch_scoring", "platform state"),
        ("s3://asgard/monitoring/records", "platform state"),
        ("s3://asgard/mlflow-artifacts/x", "platform state"),
        ("s3://asgard/feast/registry.pb", "platform state"),
        ("s3://asgard/gold/customer_aggregates", "platform state"),  # gold: readable, never writable
        ("s3://asgard/out/../jobs/x", "platform state"),
        ("s3://asgard/warehouse/gold/h2_new", "platform state (warehouse)"),
        ("s3://asgard/warehouse/predictions/x", "platform state (warehouse)"),
        ("s3://asgard/registry/m/run", "platform state (registry)"),
        ("s3://asgard/training/runs/x", "platform state (training)"),
        ("s3://asgard/predictions-staging/x", "platform state (scoring staging)"),
        ("file:///tmp/out", "scheme 'file'"),
        ("FILE:///tmp/out", "scheme 'file'"),
        ("file%3A///tmp/out", "scheme 'file'"),
        ("http://127.0.0.1:9000/asgard/x", "scheme 'http'"),
        ("https://example.com/x", "scheme 'https'"),
        ("gs://asgard/x", "scheme 'gs'"),
        ("hdfs://nn/x", "scheme 'hdfs'"),
        ("C:\\temp\\x", "backslash"),
        ("s3:asgard/x", "write it as s3://"),
        ("/tmp/out", "bare paths"),
        ("//tmp/out", "bare paths"),
        ("relative/dir", "bare paths"),
        ("../../etc", "bare paths"),
        ("%2Ftmp%2Fout", "bare paths"),
        ("local://x", "local locations are disabled"),
        ("", "empty"),
        ("   ", "empty"),
        ("s3://asgard/" + "a" * 1100, "longer than"),
    ],
)
def test_refused_writes(settings: Settings, raw: str, needle: str) -> None:
    with pytest.raises(InvalidRequest, match=re.escape(needle)) as info:
        _w(settings, raw)
    assert "output_path" in info.value.message


def test_non_string_is_refused(settings: Settings) -> None:
    for raw in (None, 12, ["s3://asgard/x"], {"path": "s3://asgard/x"}):
        with pytest.raises(InvalidRequest, match="must be a string"):
            _w(settings, raw)


def test_refusal_is_the_same_whatever_exists(settings: Settings, tmp_path: Path) -> None:
    """The message for a refused host path does not depend on whether it exists (no I/O at all)."""
    (tmp_path / "a.txt").write_text("x")
    there = str(excinfo_message(settings, str(tmp_path))).replace(str(tmp_path), "<p>")
    absent = str(excinfo_message(settings, str(tmp_path / "nope"))).replace(str(tmp_path / "nope"), "<p>")
    assert there == absent


def excinfo_message(settings: Settings, raw: str) -> str:
    with pytest.raises(InvalidRequest) as info:
        _w(settings, raw)
    return info.value.message


def test_read_allow_list(settings: Settings) -> None:
    assert _r(settings, "s3://asgard/entities/2025") == "s3://asgard/entities/2025"
    assert _r(settings, "s3://asgard/gold/customer_aggregates") == "s3://asgard/gold/customer_aggregates"
    assert _r(settings, "s3://my-bucket/predictions/x") == "s3://my-bucket/predictions/x"
    for raw, needle in [("s3://my-bucket/other", "not an allowed location to read"), ("s3://asgard/jobs/x", "platform state"),
                        ("s3://elsewhere/x", "ASGARD_INPUT_BUCKETS")]:
        with pytest.raises(InvalidRequest, match=needle):
            _r(settings, raw)
    narrow = settings.model_copy(update={"asgard_input_buckets": ["inputs/entities"]})
    assert _r(narrow, "s3://inputs/entities/a") == "s3://inputs/entities/a"
    assert _r(narrow, "s3://asgard/gold/t") == "s3://asgard/gold/t"  # gold tables stay readable
    with pytest.raises(InvalidRequest, match="not an allowed location"):
        _r(narrow, "s3://asgard/entities/a")


def test_normalise_key() -> None:
    assert normalise_key("a//b/./c/") == "a/b/c"
    assert normalise_key("a/../b") == "b"
    assert normalise_key("a/../..") is None
    assert normalise_key("") == ""


def test_local_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "data").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "escape")
    os.symlink(root / "data", root / "inside")
    s = Settings(asgard_local_root=root)
    assert _w(s, "local://preds/run1") == "local://preds/run1"
    assert _w(s, "local://a/../preds") == "local://preds"
    assert _w(s, "local://inside/x") == "local://inside/x"  # a symlink that stays inside is fine
    assert confine_local(s, "inside/x") == os.path.realpath(root / "data" / "x")
    for raw, needle in [
        ("local://escape/x", "out of the local root"),
        ("local://escape", "out of the local root"),
        ("local://../outside", "climbs above the local root"),
        ("local://%2e%2e/outside", "climbs above the local root"),
        ("local://", "whole local root"),
        ("local://.", "whole local root"),
        (str(root / "preds"), "bare paths"),
        (f"file://{root}/preds", "scheme 'file'"),
    ]:
        with pytest.raises(InvalidRequest, match=needle):
            _w(s, raw)
    with pytest.raises(InvalidRequest, match="leaves the local root"):
        confine_local(s, "escape/x")


def test_job_files_are_recognised_by_exact_layout() -> None:
    out = "s3://b/p"
    good = f"{out}/model_version=3/score_date=2025-10-17/batch-abc_0123abcd_000002.parquet"
    assert is_job_file(out, good, "batch-abc")
    assert is_job_file(out, good.replace(".parquet", "-1.parquet"), "batch-abc")
    for bad in [
        f"{out}/batch-abc_0123abcd_000002.parquet",  # not in a partition folder
        f"{out}/model_version=3/score_date=2025-10-17/batch-abc_notes.txt",
        f"{out}/model_version=3/score_date=2025-10-17/batch-abcd_0123abcd_000002.parquet",  # another job id
        "s3://b/other/model_version=3/score_date=2025-10-17/batch-abc_0123abcd_000002.parquet",
    ]:
        assert not is_job_file(out, bad, "batch-abc")
    assert not is_job_file(out, good, "batch")  # a shorter job id never claims another job's files


def test_classify_keeps_foreign_files_apart() -> None:
    out = "s3://b/p"
    part = f"{out}/model_version=1/score_date=2025-10-17"
    old = [f"{part}/job-old_aa_000000.parquet", f"{part}/job-old_aa_000001.parquet"]
    mine = f"{part}/job-new_bb_000000.parquet"
    crashed = f"{part}/job-dead_cc_000000.parquet"
    existing = [*old, mine, crashed, f"{out}/a.txt", f"{out}/_manifest.json", f"{out}/_lease.json", "s3://b/elsewhere/x"]
    manifest = {"job_id": "job-old", "files": [{"path": p, "rows": 1} for p in old] + [{"path": "s3://b/elsewhere/x"}],
                "replaced_files": []}
    state = classify(out, existing, "job-new", manifest)
    assert state.committed_job_id == "job-old"
    assert state.committed == sorted(old)  # a manifest entry outside the prefix is never the platform's to delete
    assert state.own == [mine]
    assert sorted(state.foreign) == sorted([crashed, f"{out}/a.txt", "s3://b/elsewhere/x"])
    no_manifest = classify(out, existing, "job-new", None)  # an unparseable manifest is itself foreign
    assert f"{out}/_manifest.json" in no_manifest.foreign and not no_manifest.committed


def test_storage_calls_never_open_host_paths_without_a_root(tmp_path: Path) -> None:
    from asgard_ray.storage import read_bytes, resolve

    secret = tmp_path / "secret.txt"
    secret.write_text("x")
    s = Settings()
    for uri in (str(secret), f"file://{secret}", "local://secret.txt"):
        with pytest.raises(InvalidRequest, match=r"refused|disabled"):
            resolve(s, uri)
        with pytest.raises(InvalidRequest):
            read_bytes(s, uri)


def test_local_root_storage_and_lease(tmp_path: Path) -> None:
    from asgard_ray.errors import Conflict
    from asgard_ray.storage import OutputLease, current_lease, list_files, read_bytes, to_uri, write_bytes

    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside.txt").write_text("x")
    os.symlink(tmp_path / "outside.txt", root / "link.txt")
    s = Settings(asgard_local_root=root)
    write_bytes(s, "local://out/a.bin", b"abc")
    assert read_bytes(s, "local://out/a.bin") == b"abc"
    listed = list_files(s, "local://out")
    assert [to_uri(s, "local://out", f) for f in listed] == ["local://out/a.bin"]
    with pytest.raises(InvalidRequest, match="leaves the local root"):
        read_bytes(s, "local://link.txt")  # a symlink out of the root is refused at open time too
    with pytest.raises(InvalidRequest):
        read_bytes(s, str(tmp_path / "outside.txt"))
    with OutputLease(s, "local://out", "job-a", ttl_s=30):
        assert current_lease(s, "local://out").job_id == "job-a"
        with pytest.raises(Conflict, match="job-a"):
            OutputLease(s, "local://out", "job-b").acquire()
    assert current_lease(s, "local://out") is None


def test_state_locations_follow_the_settings_wherever_they_point() -> None:
    """A warehouse or artifact root in another bucket is refused there too, and so is an ancestor of one."""
    settings = Settings(
        s3_bucket="asgard",
        asgard_output_buckets=["asgard", "lake", "ml-models"],
        asgard_gold_warehouse="s3://lake/iceberg/warehouse",
        mlflow_artifact_location="s3://ml-models/artifacts",
        asgard_train_storage_uri="s3://lake/checkpoints",
    )
    for uri in ("s3://lake/iceberg/warehouse/t", "s3://lake/iceberg", "s3://ml-models/artifacts/1/run", "s3://lake/checkpoints/j"):
        with pytest.raises(InvalidRequest, match="platform state"):
            _w(settings, uri)
    assert _w(settings, "s3://lake/predictions/x") == "s3://lake/predictions/x"
    assert _w(settings, "s3://asgard/warehouse/x") == "s3://asgard/warehouse/x"  # not the warehouse under these settings
    assert _r(settings, "s3://lake/iceberg/warehouse/t/data/f.parquet").startswith("s3://lake/")  # readable


def test_every_state_location_is_refused_for_writes_and_internal_state_for_reads(settings: Settings) -> None:
    from asgard_ray.storage.paths import READABLE_STATE

    for name, uri in settings.state_locations().items():
        with pytest.raises(InvalidRequest, match="platform state"):
            _w(settings, f"{uri}/x")
        if name not in READABLE_STATE:
            with pytest.raises(InvalidRequest):
                _r(settings, f"{uri}/x")
