"""Lifecycle faults on the live embedded stack (``asgard up``): the API replica killed under load, batches out of memory.

- The Serve replica of the control API is SIGKILLed under a bounded load of GETs: every answer that
  is not 2xx is a 5xx or a connection error, all of them inside the window while the replica is
  down; 2xx resumes; an async scoring job submitted before the kill ends ``completed`` or ``failed``
  with its cause (jobs are owned by the detached supervisor actor ``asgard-jobs``, not the replica).
- A batch that runs out of memory. A real OOM kill cannot be provoked safely on a shared machine, so
  both of its shapes are emulated, honestly named:

  (a) *MemoryError raised in the scoring worker*: a scikit-learn model whose ``predict_proba``
      raises ``MemoryError`` exactly as numpy does when an allocation fails (batch scoring loads
      native flavors only, so no pyfunc: a sklearn estimator subclass, pickled by value);
  (b) *the kernel's OOM killer*: the job's Ray task process (``batch_scoring:<job_id>``, which drives
      the Ray Data pipeline and holds its blocks) is SIGKILLed on every attempt until Ray's task
      retries (``max_retries=1`` for scoring) run out. One SIGKILL of a Ray Data scoring *actor*,
      which Ray recovers from, is covered by
      ``tests/integration/test_scoring_faults.py::test_killed_worker_mid_job_scores_every_entity_exactly_once``.

  Each ends ``failed`` with a cause that names memory or the worker's death, no manifest, no partial
  file, and the stack still scores a small job afterwards.

The helpers (a model registered in the stack's MLflow, entities on its S3, Ray's state API through
the dashboard) are shared with ``tests/e2e/test_stack.py``, whose restart cycle holds the
``asgard down`` / ``up`` mid-job case.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from asgard_ray.scoring.manifest import manifest_uri
from asgard_ray.scoring.sink import job_files
from asgard_ray.storage import exists, resolve
from tests.conftest import SEED_FEATURE_SPEC, api_url, dashboard_url, stack_settings, token_path

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
MODEL = "lifecycle_churn"
OOM_MODEL = "lifecycle_oom"
REPLICA_CLASS = "ServeReplica:asgard:AsgardAPI"
T = TypeVar("T")

_REGISTER = """
import sys
from mlflow.tracking import MlflowClient
from asgard_ray.config import Settings
from tests.integration.test_scoring import register_churn_model
settings, name = Settings(), sys.argv[1]
found = MlflowClient(settings.tracking_uri).search_model_versions(f"name='{name}'")
print(max((int(v.version) for v in found), default=0) or register_churn_model(settings, name, alias=None))
"""

_REGISTER_OOM = """
import json, sys
import mlflow
import numpy as np
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression
from asgard_ray import lineage
from asgard_ray.config import Settings
from asgard_ray.local.demo_data import customer_aggregates
from tests.integration.test_scoring import FEATURES

class OutOfMemoryModel(LogisticRegression):  # defined in __main__: pickled by value, loads anywhere
    def predict_proba(self, X):
        raise MemoryError(f"Unable to allocate 7.45 GiB for an array with shape ({len(X)}, 1000000000) and data type float64")

    def predict(self, X):
        return self.predict_proba(X)

settings, name = Settings(), sys.argv[1]
gold = customer_aggregates()
X, y = gold[FEATURES].head(200), gold["churned"].head(200)
est = OutOfMemoryModel(max_iter=50).fit(X, y)
mlflow.set_tracking_uri(settings.tracking_uri)
mlflow.set_experiment("lifecycle-faults")
with mlflow.start_run():
    info = mlflow.sklearn.log_model(  # cloudpickle: skops cannot load a class defined in __main__
        est, name=lineage.MODEL_ARTIFACT, serialization_format="cloudpickle",
        signature=infer_signature(X, np.zeros(len(X), dtype="int64")),
    )
    mlflow.set_tags({
        lineage.TAG_FEATURE_COLUMNS: json.dumps(FEATURES), lineage.TAG_FEATURE_VIEWS: json.dumps(["customer_features"]),
        lineage.TAG_JOIN_KEYS: json.dumps(["customer_id"]), lineage.TAG_LABEL: "churned", lineage.TAG_FRAMEWORK: "sklearn",
        lineage.TAG_MODEL_TYPE: "classification", lineage.TAG_CLASSES: json.dumps([0, 1]),
    })
print(mlflow.register_model(info.model_uri, name).version)
"""


# --- helpers, shared with tests/e2e/test_stack.py ---------------------------------------------------
def register_stack_model(env: dict[str, str], name: str, script: str = _REGISTER) -> str:
    """Register a small churn model as ``name`` in the stack's MLflow (once); return its version.

    A subprocess with exactly the stack's environment: MLflow's tracking URI and active experiment
    are process-global, and this test process also talks to the integration fixtures' MLflow.
    """
    done = subprocess.run([sys.executable, "-c", script, name], env=env, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout.strip().splitlines()[-1]


def write_entities(env: dict[str, str], uri: str, n: int) -> None:
    """``customer_id`` 1..n as one Parquet file under ``uri`` on the stack's S3."""
    fs, path = resolve(stack_settings(env), uri)
    ids = pa.Table.from_pandas(pd.DataFrame({"customer_id": np.arange(1, n + 1, dtype="int64")}), preserve_index=False)
    pq.write_table(ids, f"{path}/part-0.parquet", filesystem=fs)


def ray_state(env: dict[str, str], resource: str, **equal: str) -> list[dict[str, Any]]:
    """Ray's state API (``/api/v0/<resource>``, detailed) through the stack's dashboard, filtered on equality."""
    params: list[tuple[str, str | int]] = [("detail", "true"), ("limit", 1000)]
    for key, value in equal.items():
        params += [("filter_keys", key), ("filter_predicates", "="), ("filter_values", value)]
    headers = {"Authorization": f"Bearer {token_path(env).read_text().strip()}"}
    r = httpx.get(f"{dashboard_url(env)}/api/v0/{resource}", params=params, headers=headers, timeout=30)
    r.raise_for_status()
    return list(r.json()["data"]["result"]["result"])


def running_task_pid(env: dict[str, str], name: str, exclude: frozenset[int] | set[int] = frozenset()) -> int | None:
    """The worker pid of a RUNNING attempt of the Ray task ``name`` (not one of ``exclude``), or None."""
    try:
        tasks = ray_state(env, "tasks", name=name)
    except httpx.HTTPError:
        return None
    pids = [int(t["worker_pid"]) for t in tasks if t.get("state") == "RUNNING" and t.get("worker_pid")]
    return next((p for p in pids if p not in exclude), None)


def until(check: Callable[[], T | None], timeout: float, what: str, every: float = 0.5) -> T:
    """Poll ``check`` until it returns something truthy (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"{what} not seen within {timeout}s")


def settle(api: str, job_id: str, timeout: float = 240) -> dict[str, Any]:
    """Read a batch job until it is ``completed`` or ``failed`` (bounded); each read reconciles it."""

    def done() -> dict[str, Any] | None:
        r = httpx.get(f"{api}/mlops/serve/batch/{job_id}", timeout=60)
        return r.json() if r.status_code == 200 and r.json()["status"] in ("completed", "failed") else None

    return until(done, timeout, f"job {job_id} finished", every=1.0)


def score_body(model: str, version: str, out: str, **extra: Any) -> dict[str, Any]:
    """A batch request for the seed's feature view."""
    return {"model_name": model, "model_version": version, "feature_views": ["customer_features"], "output_path": out,
            "overwrite": True, **extra}  # fmt: skip


def assert_small_job_scores(api: str, version: str, out: str) -> None:
    """The stack still scores: 10 rows, synchronously, committed."""
    r = httpx.post(f"{api}/mlops/serve/batch", json=score_body(MODEL, version, out, entities_df={"customer_id": list(range(1, 11))}),
                   timeout=400)  # fmt: skip
    assert r.status_code == 200 and r.json()["status"] == "completed", r.text
    assert r.json()["total_rows"] == 10


# --- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def churn_version(stack: dict[str, str]) -> str:
    """The seed's feature view and a LightGBM churn model, in the stack."""
    r = httpx.post(f"{api_url(stack)}/feast/features", json=SEED_FEATURE_SPEC, timeout=180)
    assert r.status_code in (200, 201), r.text
    return register_stack_model(stack, MODEL)


# --- the Serve replica killed under load -------------------------------------------------------------
CLIENTS = 4
LOAD_S = 20.0
DOWN_WINDOW_S = 60.0


def test_kill_the_api_replica_under_load(stack: dict[str, str], churn_version: str) -> None:
    api = api_url(stack)
    n, out, job_id = 20_000, "s3://asgard/test-lifecycle/replica-out", "batch-lifecycle-replica"
    write_entities(stack, "s3://asgard/test-lifecycle/replica-entities", n)
    body = score_body(MODEL, churn_version, out, job_id=job_id, entities_source={"path": "s3://asgard/test-lifecycle/replica-entities"})
    body["async"] = True
    started = httpx.post(f"{api}/mlops/serve/batch", json=body, timeout=300)
    assert started.status_code in (200, 202), started.text  # 200: a re-run (pytest --reruns) found it completed

    (replica,) = [a for a in ray_state(stack, "actors", class_name=REPLICA_CLASS) if a.get("state") == "ALIVE"]
    answers: list[tuple[float, int | str, float]] = []  # (monotonic time, status code or transport error name, latency)
    lock = threading.Lock()
    stop_at = time.monotonic() + LOAD_S

    def client(c: int) -> None:
        paths = ("/mlops/health", "/mlops/jobs?limit=5")
        with httpx.Client(base_url=api, timeout=15) as http:
            for i in range(10_000):
                if time.monotonic() > stop_at:
                    return
                sent = time.monotonic()
                try:
                    got: int | str = http.get(paths[(c + i) % len(paths)]).status_code
                except httpx.TransportError as exc:
                    got = type(exc).__name__
                with lock:
                    answers.append((time.monotonic(), got, time.monotonic() - sent))
                time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(CLIENTS)]
    for t in threads:
        t.start()
    time.sleep(3)
    killed_at = time.monotonic()
    os.kill(int(replica["pid"]), signal.SIGKILL)
    for t in threads:
        t.join(timeout=LOAD_S + 30)
    assert not any(t.is_alive() for t in threads)
    resumed = until(lambda: _health(api), 180, "a 2xx from a new replica")
    print(f"replica pid {replica['pid']} killed; health 2xx again after {resumed - killed_at:.1f}s; {len(answers)} answers")

    ok = [t for t, got, _ in answers if isinstance(got, int) and 200 <= got < 300]
    bad = [(t - killed_at, got) for t, got, _ in answers if not (isinstance(got, int) and 200 <= got < 300)]
    slowest = max(answers, key=lambda a: a[2])
    print(f"non-2xx: {len(bad)}, {sorted({str(g) for _, g in bad})}, from {min((d for d, _ in bad), default=0):.1f}s "
          f"to {max((d for d, _ in bad), default=0):.1f}s after the kill; 2xx: {len(ok)}; slowest answer "
          f"{slowest[2]:.1f}s, at {slowest[0] - killed_at:.1f}s after the kill")  # fmt: skip
    assert [t for t in ok if t < killed_at], "no 2xx before the kill: the load did not run"
    assert all(isinstance(got, str) or got >= 500 for _, got in bad), bad  # 5xx or a connection error, never a 4xx
    assert all(0 <= dt <= DOWN_WINDOW_S for dt, _ in bad), bad  # only while the replica is down
    assert resumed - killed_at <= DOWN_WINDOW_S + 30
    new = [a for a in ray_state(stack, "actors", class_name=REPLICA_CLASS) if a.get("state") == "ALIVE"]
    assert new and new[0]["pid"] != replica["pid"], new

    final = settle(api, job_id)  # the job belongs to the supervisor: it finishes or fails cleanly
    if final["status"] == "completed":
        assert final["rows_done"] == n and exists(stack_settings(stack), manifest_uri(out))
    else:
        assert final["error"], final
        assert not exists(stack_settings(stack), manifest_uri(out))


def _health(api: str) -> float | None:
    try:
        return time.monotonic() if httpx.get(f"{api}/mlops/health", timeout=5).status_code == 200 else None
    except httpx.TransportError:
        return None


# --- a batch out of memory ------------------------------------------------------------------------------
def test_memory_error_in_the_scoring_worker_fails_the_job_cleanly(stack: dict[str, str], churn_version: str) -> None:
    """Shape (a): the model's predict raises ``MemoryError`` inside the Ray Data scoring worker."""
    api, settings = api_url(stack), stack_settings(stack)
    version = register_stack_model(stack, OOM_MODEL, _REGISTER_OOM)
    out, job_id = "s3://asgard/test-lifecycle/oom-raise-out", "batch-lifecycle-oom-raise"
    body = score_body(OOM_MODEL, version, out, job_id=job_id, entities_df={"customer_id": list(range(1, 301))})
    r = httpx.post(f"{api}/mlops/serve/batch", json=body, timeout=400)
    assert r.status_code in (200, 202, 500), r.text
    final = settle(api, job_id, timeout=120)
    assert final["status"] == "failed", final
    assert "MemoryError" in final["error"] and "Unable to allocate" in final["error"], final["error"]
    assert not exists(settings, manifest_uri(out))
    assert job_files(settings, out, job_id) == []  # nothing partial presented as output
    assert_small_job_scores(api, churn_version, "s3://asgard/test-lifecycle/after-oom-raise")


def test_scoring_task_killed_like_the_oom_killer_until_retries_run_out(stack: dict[str, str], churn_version: str) -> None:
    """Shape (b): SIGKILL of the job's Ray task process on every attempt, as the kernel's OOM killer does."""
    api, settings = api_url(stack), stack_settings(stack)
    n, out, job_id = 20_000, "s3://asgard/test-lifecycle/oom-kill-out", "batch-lifecycle-oom-kill"
    write_entities(stack, "s3://asgard/test-lifecycle/oom-kill-entities", n)
    body = score_body(MODEL, churn_version, out, job_id=job_id, entities_source={"path": "s3://asgard/test-lifecycle/oom-kill-entities"})
    body["async"] = True
    started = httpx.post(f"{api}/mlops/serve/batch", json=body, timeout=300)
    assert started.status_code == 202, started.text

    task, killed = f"batch_scoring:{job_id}", set[int]()
    for _ in range(3):  # max_retries=1: two kills end it; a third attempt would be a bug
        pid = until(lambda: running_task_pid(stack, task, killed) or _finished(api, job_id), 120, f"a running attempt of {task}", 0.3)
        if pid < 0:
            break
        os.kill(pid, signal.SIGKILL)
        killed.add(pid)
    assert len(killed) == 2, killed

    final = settle(api, job_id, timeout=60)
    assert final["status"] == "failed", final
    error = final["error"] or ""
    assert "died" in error or "WorkerCrashed" in error or "memory" in error.lower(), error
    assert not exists(settings, manifest_uri(out))
    until(lambda: not job_files(settings, out, job_id), 60, "partial files removed")
    assert_small_job_scores(api, churn_version, "s3://asgard/test-lifecycle/after-oom-kill")


def _finished(api: str, job_id: str) -> int | None:
    """-1 once the job is over (no attempt left to kill), else None."""
    r = httpx.get(f"{api}/mlops/serve/batch/{job_id}", timeout=60)
    return -1 if r.status_code == 200 and r.json()["status"] in ("completed", "failed") else None
