"""The output boundary against the real S3 server, MLflow, Feast and local Ray.

Overwrite deletes only files a platform manifest lists; foreign files are kept and refused (409);
one job at a time holds an output path's lease, a dead holder's lease expires, a failed job releases it.
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from asgard_ray.config import Settings
from asgard_ray.errors import Conflict, InvalidRequest
from asgard_ray.scoring import BatchScoreRequest, read_manifest
from asgard_ray.scoring.plan import prepare_plan
from asgard_ray.scoring.runner import run_scoring
from asgard_ray.storage import OutputLease, current_lease, lease_uri, list_files, read_bytes, resolve, write_bytes
from tests.integration.test_scoring import register_churn_model

pytestmark = pytest.mark.integration

MODEL = "boundary_churn"


@pytest.fixture(scope="module")
def model(settings: Settings, customer_features: str) -> str:
    return register_churn_model(settings, MODEL, alias=None)


def _request(version: str, output_path: str, **over: object) -> BatchScoreRequest:
    body = {"model_name": MODEL, "model_version": version, "feature_views": ["customer_features"],
            "entities_df": {"customer_id": list(range(1, 21))}, "output_path": output_path, **over}
    return BatchScoreRequest.model_validate(body)


def _score(settings: Settings, request: BatchScoreRequest, job_id: str) -> dict:
    plan = prepare_plan(settings, request, job_id)
    return run_scoring(settings, plan, track=False)


def _files(settings: Settings, uri: str) -> list[str]:
    return sorted(f"s3://{f}" for f in list_files(settings, uri))


def test_host_paths_and_other_buckets_are_refused_before_any_io(settings: Settings, model: str, tmp_path) -> None:
    (tmp_path / "a.txt").write_text("keep me")
    for raw in (str(tmp_path), f"file://{tmp_path}", "s3://someone-elses-bucket/x", "s3://my-bucket/../asgard/jobs",
                "s3://asgard/%2e%2e/x", "s3://asgard/jobs/batch_scoring"):
        with pytest.raises(InvalidRequest, match="output_path"):
            prepare_plan(settings, _request(model, raw, overwrite=True), "batch-refused-1")
    src = {"path": str(tmp_path), "features_included": True}
    with pytest.raises(InvalidRequest, match=r"entities_source\.path") as info:
        prepare_plan(settings, BatchScoreRequest.model_validate(
            {"model_name": MODEL, "model_version": model, "entities_source": src, "output_path": "s3://asgard/boundary/never"}), "b-1")
    assert "columns" not in str(info.value.detail)
    assert (tmp_path / "a.txt").read_text() == "keep me"


def test_overwrite_keeps_foreign_files_and_answers_409(settings: Settings, model: str, ray_session: None) -> None:
    out = "s3://my-bucket/boundary/foreign"
    write_bytes(settings, f"{out}/a.txt", b"user data")
    write_bytes(settings, f"{out}/sub/b.txt", b"more user data")
    before = _files(settings, out)
    for overwrite in (False, True):
        with pytest.raises(Conflict, match="did not write") as info:
            _score(settings, _request(model, out, overwrite=overwrite), f"batch-foreign-{int(overwrite)}")
        assert info.value.detail["foreign_files"] == 2
    assert _files(settings, out) == before  # nothing deleted, no manifest, no lease left behind
    assert read_bytes(settings, f"{out}/a.txt") == b"user data"


def test_overwrite_removes_only_manifest_listed_files(settings: Settings, model: str, ray_session: None) -> None:
    out = "s3://asgard/boundary/replace"
    first = _score(settings, _request(model, out), "batch-replace-1")
    old = [f.path for f in read_manifest(settings, out).files]
    assert first["total_rows"] == 20 and old
    with pytest.raises(Conflict, match="committed output of job batch-replace-1"):
        _score(settings, _request(model, out), "batch-replace-2")
    _score(settings, _request(model, out, overwrite=True), "batch-replace-2")
    manifest = read_manifest(settings, out)
    assert manifest.job_id == "batch-replace-2" and manifest.replaced_files == old
    assert _files(settings, out) == sorted([f"{out}/_manifest.json", *(f.path for f in manifest.files)])

    # leftovers of a job that never committed look like platform files but no manifest lists them
    part = manifest.files[0].path.rsplit("/", 1)[0]
    leftover = f"{part}/batch-dead_0123abcd_000000.parquet"
    write_bytes(settings, leftover, b"PAR1 not really")
    with pytest.raises(Conflict, match="did not write"):
        _score(settings, _request(model, out, overwrite=True), "batch-replace-3")
    assert leftover in _files(settings, out)
    assert read_manifest(settings, out).job_id == "batch-replace-2"


def test_second_job_gets_409_naming_the_lease_holder(settings: Settings, model: str, ray_session: None) -> None:
    out = "s3://asgard/boundary/leased"
    with OutputLease(settings, out, "batch-holder-1"):
        with pytest.raises(Conflict, match="being written by job batch-holder-1") as info:
            _score(settings, _request(model, out), "batch-second-1")
        assert info.value.detail["holder_job_id"] == "batch-holder-1"
        # the job itself re-checks under the lease: a plan made before the lease was taken still fails
        plan = prepare_plan(settings, _request(model, "s3://asgard/boundary/leased-2"), "batch-second-2")
        with OutputLease(settings, "s3://asgard/boundary/leased-2", "batch-holder-2"), pytest.raises(Conflict, match="batch-holder-2"):
            run_scoring(settings, plan, track=False)
    assert current_lease(settings, out) is None
    assert _score(settings, _request(model, out), "batch-second-1")["total_rows"] == 20
    assert current_lease(settings, out) is None  # released on completion


def test_lease_of_a_dead_holder_expires(settings: Settings, model: str, ray_session: None) -> None:
    out = "s3://asgard/boundary/dead-holder"
    code = (
        "import sys, time\n"
        "from asgard_ray.config import Settings\n"
        "from asgard_ray.storage import OutputLease\n"
        f"s = Settings(s3_endpoint_url={settings.s3_endpoint!r})\n"
        f"OutputLease(s, {out!r}, 'batch-doomed-1', ttl_s=2).__enter__()\n"
        "print('held', flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        holder = current_lease(settings, out)
        assert holder is not None and holder.job_id == "batch-doomed-1"
        with pytest.raises(Conflict, match="batch-doomed-1"):
            _score(settings, _request(model, out), "batch-after-death")
    finally:
        proc.kill()  # the holder dies without releasing: its heartbeat stops
        proc.wait(timeout=30)
    for _ in range(60):  # bounded: the TTL is 2 s on the server's clock
        if current_lease(settings, out) is None:
            break
        time.sleep(0.5)
    assert current_lease(settings, out) is None
    assert _score(settings, _request(model, out), "batch-after-death")["total_rows"] == 20


def test_failed_job_releases_its_lease_and_leaves_nothing(settings: Settings, model: str, ray_session: None) -> None:
    src = "s3://asgard/boundary/entities/bad"
    bad = pd.DataFrame({"customer_id": np.arange(1, 51, dtype="int64"), "total_orders": ["many"] * 50,
                        "avg_order_value": np.ones(50), "days_since_last_order": np.ones(50, dtype="int64")})
    fs, path = resolve(settings, src)
    pq.write_table(pa.Table.from_pandas(bad, preserve_index=False), f"{path}/part-0.parquet", filesystem=fs)
    out = "s3://asgard/boundary/failed"
    request = BatchScoreRequest.model_validate({
        "model_name": MODEL, "model_version": model, "output_path": out,
        "entities_source": {"path": src, "features_included": True},
    })
    with pytest.raises(Exception, match="batch-fails-1"):
        _score(settings, request, "batch-fails-1")
    assert list_files(settings, out) == []  # no data files, no manifest, no lease
    assert current_lease(settings, out) is None
    with pytest.raises(FileNotFoundError):
        read_bytes(settings, lease_uri(out))
