"""Error bodies carry no traceback, no process ids and no terminal codes; Ray wrappers are unwrapped."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from asgard_ray import errors as e
from asgard_ray.api.errors import clean_text, install_error_handlers

ANSI_TRACEBACK = (
    "The actor died because of an error raised in its creation task, "
    "\x1b[36mray::asgard-monitoring:MonitoringActor.__init__()\x1b[39m (pid=4242, ip=10.0.0.7, actor_id=ab12, repr=<x>)\n"
    '  File "/srv/asgard_ray/monitoring/actor.py", line 60, in __init__\n'
    "    self._state = MonitoringState.rebuild(store)\n"
    '  File "/srv/asgard_ray/monitoring/state.py", line 12, in rebuild\n'
    "    record = MonitoringRecord.model_validate_json(line)\n"
    "RecursionError: maximum recursion depth exceeded"
)


def _ray_task_error(cause: Exception) -> Exception:
    from ray.exceptions import RayTaskError

    tb = 'Traceback (most recent call last):\n  File "/srv/x.py", line 1, in f\n    raise\n' + f"{type(cause).__name__}: {cause}"
    return RayTaskError("f", tb, cause).as_instanceof_cause()


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/raise/{kind}")
    def _raise(kind: str) -> dict:
        if kind == "actor_text":
            raise e.ServiceUnavailable(f"the monitoring actor 'asgard-monitoring' is unavailable: {ANSI_TRACEBACK}")
        if kind == "ray_domain":
            raise _ray_task_error(e.InvalidRequest("start_date must be a time", detail={"field": "start_date"}))
        if kind == "ray_other":
            raise _ray_task_error(ValueError("secret internals at /srv/x.py"))
        if kind == "actor_died":
            from ray.exceptions import RayActorError

            raise RayActorError(error_msg=ANSI_TRACEBACK)
        if kind == "ansi_detail":
            raise e.Conflict("\x1b[31mbusy\x1b[0m", detail={"holder": "\x1b[1mjob-1\x1b[0m", "lines": ["\x1b[2Ka"]})
        raise RuntimeError(ANSI_TRACEBACK)

    return TestClient(app, raise_server_exceptions=False)


def _assert_clean(text: str) -> None:
    assert "\x1b" not in text and "\\u001b" not in text
    assert "Traceback" not in text and 'File "' not in text
    assert "pid=" not in text and "ip=" not in text


def test_actor_traceback_in_a_message_is_reduced_to_its_summary(client: TestClient) -> None:
    r = client.get("/raise/actor_text")
    assert r.status_code == 503
    _assert_clean(r.text)
    assert r.json()["error"] == (
        "the monitoring actor 'asgard-monitoring' is unavailable: The actor died because of an error raised "
        "in its creation task: RecursionError: maximum recursion depth exceeded"
    )


def test_domain_error_inside_a_ray_task_keeps_its_status_and_message(client: TestClient) -> None:
    r = client.get("/raise/ray_domain")
    assert r.status_code == 422
    assert r.json() == {"error": "start_date must be a time", "detail": {"field": "start_date"}}


def test_other_error_inside_a_ray_task_is_a_bare_500(client: TestClient) -> None:
    r = client.get("/raise/ray_other")
    assert r.status_code == 500
    assert set(r.json()["detail"]) == {"incident"}
    assert "secret" not in r.text


def test_dead_actor_is_503_without_internals(client: TestClient) -> None:
    r = client.get("/raise/actor_died")
    assert r.status_code == 503
    _assert_clean(r.text)
    assert r.headers["retry-after"]


def test_terminal_codes_are_stripped_from_message_and_detail(client: TestClient) -> None:
    r = client.get("/raise/ansi_detail")
    assert r.status_code == 409
    assert r.json() == {"error": "busy", "detail": {"holder": "job-1", "lines": ["a"]}}


def test_unexpected_error_keeps_only_the_incident(client: TestClient) -> None:
    r = client.get("/raise/boom")
    assert r.status_code == 500
    assert r.json()["error"] == "internal server error"
    assert list(r.json()["detail"]) == ["incident"]
    _assert_clean(r.text)


def test_validation_errors_do_not_echo_terminal_codes() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/typed")
    def _typed(n: int) -> dict:
        return {"n": n}

    r = TestClient(app).get("/typed", params={"n": "\x1b[31mred"})
    assert r.status_code == 422
    assert "\x1b" not in r.text and "\\u001b" not in r.text


@pytest.mark.parametrize("text", ["plain message", "name 'x' is not registered; use POST /feast/features"])
def test_ordinary_messages_are_unchanged(text: str) -> None:
    assert clean_text(text) == text
