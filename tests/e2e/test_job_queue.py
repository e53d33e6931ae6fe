"""Admission is a queue (issue 25), on the live stack: many small jobs at once all complete, in order.

45 ten-row ``POST /mlops/serve/batch`` requests sent at once (the scoring limit is 4 running, the
warm pool 2): none is refused; each answers 200 with its completed job; the jobs started in the order
they were accepted; and none is left queued or running.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.conftest import api_url
from tests.security.conftest import register_model

pytestmark = [pytest.mark.e2e]

MODEL = "queue_churn"


@pytest.fixture(scope="module")
def model(stack: dict[str, str]) -> str:
    from asgard_ray.features.specs import SEED_EXAMPLE

    r = httpx.post(f"{api_url(stack)}/feast/features", json=SEED_EXAMPLE, timeout=300)
    assert r.status_code in (200, 201), r.text
    _, version = register_model(stack, MODEL)
    return version


def test_45_small_batches_at_once_all_complete_in_submission_order(stack: dict[str, str], model: str) -> None:
    api = api_url(stack)

    def score(i: int) -> tuple[int, dict[str, Any]]:
        body = {
            "model_name": MODEL, "model_version": model, "feature_views": ["customer_features"],
            "entities_df": {"customer_id": list(range(1, 11))}, "output_path": f"s3://my-bucket/predictions/queue-{i}",
            "overwrite": True,
        }
        with httpx.Client(base_url=api, timeout=600) as http:
            r = http.post("/mlops/serve/batch", json=body)
            return r.status_code, r.json()

    with ThreadPoolExecutor(45) as pool:
        answers = list(pool.map(score, range(45)))
    assert [code for code, _ in answers] == [200] * 45, [(c, b.get("error")) for c, b in answers if c != 200]
    assert all(body["status"] == "completed" and body["total_rows"] == 10 for _, body in answers)
    with httpx.Client(base_url=api, timeout=60) as http:
        records = [http.get(f"/mlops/jobs/{body['job_id']}").json() for _, body in answers]
        raw = {body["job_id"]: http.get(f"/mlops/serve/batch/{body['job_id']}").json() for _, body in answers}
    assert all(r["status"] == "completed" for r in records)
    by_arrival = [j for _, j in sorted((raw[j]["created_at"], j) for j in raw)]
    started = _started_at(stack, list(raw))
    assert by_arrival == [j for _, j in sorted((started[j], j) for j in raw)], "jobs started out of their arrival order"


def _started_at(stack: dict[str, str], job_ids: list[str]) -> dict[str, str]:
    """Each job's ``started_at`` from its record on the stack's S3 (the views do not show it)."""
    from asgard_ray.jobs import JobStore
    from tests.conftest import stack_settings

    store = JobStore(stack_settings(stack))
    out = {}
    for job_id in job_ids:
        record = store.get("batch_scoring", job_id)
        assert record.started_at is not None, record
        out[job_id] = record.started_at.isoformat()
    return out
