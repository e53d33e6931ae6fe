"""Feast's SQL registry on Postgres: parallel writers keep every view, and a database restart loses none.

Three processes (two threads each) register six distinct feature views at the same instant, straight
into the registry (no writer actor in between), as independent replicas would. The file registry
would lose views this way (each write replaces the whole file); the SQL registry keeps one row per
view. The checks read Postgres itself, the live API, and a fresh process; then Postgres restarts and
the same readers must still find every view, through the connections they already had.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.production.conftest import PROJECT, REPO, ProdStack
from tests.production.workflow import SeedRun, call

pytestmark = [pytest.mark.production, pytest.mark.timeout(900)]

N_PROCESSES = 3
VIEWS_PER_PROCESS = 2


def _views_in_postgres(stack: ProdStack) -> set[str]:
    with stack.postgres.connect("feast") as db:  # type: ignore[attr-defined]
        rows = db.execute("SELECT feature_view_name FROM feature_views WHERE project_id = %s", (PROJECT,)).fetchall()
    return {name for (name,) in rows}


def _listed_by_api(stack: ProdStack) -> set[str]:
    with stack.client(timeout=300) as api:
        return {v["name"] for v in call(api, "GET", "/feast/features")["feature_views"]}


def _listed_by_new_process(stack: ProdStack) -> set[str]:
    proc = stack.python("-m", "tests.production.register_views", "--list", timeout=300)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("LISTED ")]
    assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-4000:]
    return set(json.loads(lines[-1].removeprefix("LISTED ")))


def test_parallel_registrations_keep_every_view_across_a_postgres_restart(prod_stack: ProdStack, seed: SeedRun, tmp_path: Path) -> None:
    names = [f"prod_parallel_view_{i}" for i in range(N_PROCESSES * VIEWS_PER_PROCESS)]
    groups = [names[i::N_PROCESSES] for i in range(N_PROCESSES)]
    writers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.production.register_views", "--sync", str(tmp_path), *group],
            cwd=REPO,
            env=prod_stack.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for group in groups
    ]
    try:
        deadline = time.monotonic() + 300
        while len(list(tmp_path.glob("ready-*"))) < N_PROCESSES:
            assert all(w.poll() is None for w in writers), [w.communicate() for w in writers if w.poll() is not None]
            assert time.monotonic() < deadline, "the writers did not get ready"
            time.sleep(0.1)
        (tmp_path / "go").touch()
        outputs = [w.communicate(timeout=300) for w in writers]
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
    statuses: dict[str, str] = {}
    for w, (out, err) in zip(writers, outputs, strict=True):
        lines = [ln for ln in out.splitlines() if ln.startswith("REGISTERED ")]
        assert w.returncode == 0 and lines, out[-2000:] + err[-4000:]
        statuses.update(json.loads(lines[-1].removeprefix("REGISTERED ")))
    assert statuses == dict.fromkeys(names, "registered"), statuses

    expected = set(names) | {"customer_features"}
    assert expected <= _views_in_postgres(prod_stack)
    assert expected <= _listed_by_api(prod_stack)
    # the database password never reaches the repo's feature_store.yaml: a placeholder stands in
    text = (prod_stack.settings.feast_repo / "feature_store.yaml").read_text()
    assert "${FEAST_REGISTRY_PATH}" in text and "registry_type: sql" in text, text
    assert prod_stack.postgres.password not in text and prod_stack.redis_password not in text
    with prod_stack.client(timeout=300) as api:  # the status names the SQL registry, never its password
        status = api.get("/feast/status")
    assert status.status_code == 200 and status.json()["healthy"], status.text
    assert status.json()["registry"] == f"postgresql+psycopg://asgard:***@127.0.0.1:{prod_stack.postgres.port}/feast", status.json()
    assert prod_stack.postgres.password not in status.text

    prod_stack.postgres.service.restart()  # fast shutdown (clients disconnected), same port and data folder

    assert expected <= _views_in_postgres(prod_stack)
    assert expected <= _listed_by_api(prod_stack)  # the API replica's pooled connections reconnect
    assert expected <= _listed_by_new_process(prod_stack)
    with prod_stack.client() as api:  # and the registry's writer (an actor holding its own pool) writes again
        again = call(api, "POST", "/feast/features", {**_seed_spec(), "name": names[0]})
    assert again["status"] == "unchanged", again


def _seed_spec() -> dict[str, object]:
    from asgard_ray.features.specs import SEED_EXAMPLE

    return dict(SEED_EXAMPLE)
