"""Helpers shared by the ``jobs/*`` entrypoints and the CLI.

Each ``jobs/<name>.py`` is a few lines over ``run_entrypoint``: it names the job kind and its request
model (plus, for some, flags that build the body), and this module parses the command line, runs the job
through the jobs core (the supervisor's task ``<kind>:<job_id>``, like an HTTP request) and prints the
result as one JSON line, last, where it is easy to pick out of the job's logs.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    from asgard_ray.jobs import JobKind

__all__ = ["Option", "load_request", "run_call", "run_entrypoint"]

Option = tuple[tuple[str, ...], dict[str, Any]]
"""An extra command-line option: ``argparse`` names and keyword arguments."""


def load_request(value: str) -> dict[str, Any]:
    """Parse a request given as a JSON file path, ``@path``, or inline JSON text."""
    text = value.strip()
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    elif not text.startswith("{"):
        text = Path(text).read_text()
    obj = json.loads(text)
    if not isinstance(obj, dict):
        raise ValueError("the request must be a JSON object")
    return obj


def run_entrypoint(
    kind: JobKind,
    model: type[BaseModel],
    argv: Sequence[str] | None,
    doc: str | None,
    *,
    options: Sequence[Option] = (),
    body: Callable[[argparse.Namespace], dict[str, Any]] | None = None,
    id_flag: str = "--job-id",
    id_from_body: bool = False,
) -> dict[str, Any]:
    """Parse ``argv``, run one job of ``kind`` to its end, print its result as one JSON line and return it.

    Args:
        kind: The job kind (its capability's ``JobKind``: ``TRAINING_JOB``, ``SCORING_JOB``, ...).
        model: The request model (the HTTP endpoint's body).
        argv: The command line without the program name.
        doc: The entrypoint's docstring (its first line is the help text).
        options: Extra options; with ``body``, they build the request when ``--request`` is not given.
        body: ``args -> request body`` from the extra options.
        id_flag: The option naming this job's own id.
        id_from_body: Use the body's ``job_id`` when the option is not given (batch scoring).
    """
    from asgard_ray.jobs import run_job

    parser = argparse.ArgumentParser(description=(doc or kind.name).strip().splitlines()[0])
    parser.add_argument("--request", required=body is None, help="request body: a JSON file path, @path, or the JSON itself")
    parser.add_argument(id_flag, dest="own_job_id", default=None, help="this job's id; a completed one is answered as it is")
    for names, kwargs in options:
        parser.add_argument(*names, **kwargs)
    args = parser.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    request = model.model_validate(load_request(args.request) if args.request or body is None else body(args))
    job_id = args.own_job_id or (getattr(request, "job_id", None) if id_from_body else None)
    result = run_job(kind, request, job_id)
    print(json.dumps(result, default=str))  # one line, last
    return result


def run_call(model: type[BaseModel], call: Callable[[Any], BaseModel], argv: Sequence[str] | None, doc: str | None) -> dict[str, Any]:
    """Parse ``--request`` into ``model``, run ``call`` on it here (no job: a quick registry write), print and return its result."""
    parser = argparse.ArgumentParser(description=(doc or model.__name__).strip().splitlines()[0])
    parser.add_argument("--request", required=True, help="request body: a JSON file path, @path, or the JSON itself")
    args = parser.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = call(model.model_validate(load_request(args.request))).model_dump(mode="json")
    print(json.dumps(result, default=str))  # one line, last
    return result
