"""The docs name only real settings, and the configuration page lists every setting.

Every environment variable that ``README.md``, ``docs/*.md`` and ``bench/README.md`` name in one of the
platform's families (``ASGARD_*`` and the seed's ``MLFLOW_*``, ``S3_*``, ``TRINO_*``, ``FEAST_*``,
``GOLD_*``, ``AWS_*``, ``RAY_*``) must be a field of ``asgard_ray.config.Settings`` (upper-cased), or
one of the few variables that Ray, boto3, Feast or MLflow read themselves (``EXTERNAL``). A name
with a placeholder (``ASGARD_MAX_RUNNING_JOBS_<KIND>``, ``TRINO_*``) must match at least one of them.
The reverse holds too: every field appears in ``docs/configuration.md``. So documenting
``ASGARD_FOO``, which does not exist, fails here, and so does adding a setting without its line.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from asgard_ray.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md"]
CONFIGURATION = ROOT / "docs" / "configuration.md"
README_LIMIT_BYTES = 15_000
"""The README is a guide; reference pages go to ``docs/`` (a hard limit, as ``wc -c`` counts)."""

FAMILIES = ("ASGARD", "MLFLOW", "S3", "TRINO", "FEAST", "GOLD", "AWS", "RAY")
"""Prefixes of the names ``Settings`` reads; a documented name with one of them is checked."""

EXTERNAL = {
    "RAY_AUTH_MODE": "Ray: turns token authentication on (`token`) for every Ray process and client",
    "RAY_AUTH_TOKEN": "Ray: the token itself; KubeRay sets it from a Secret in every Ray container",
    "RAY_SERVE_ENABLE_DIRECT_INGRESS": "Ray Serve: ingress replicas also serve HTTP on their own port",
    "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": "Ray Serve: the lowest port a direct-ingress replica may take",
    "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": "Ray Serve: the highest port a direct-ingress replica may take",
    "RAY_SERVE_ENABLE_HA_PROXY": "Ray Serve: HAProxy as the HTTP ingress instead of its Python proxy",
    "AWS_DEFAULT_REGION": "boto3/botocore: the default region (set from AWS_REGION for workers)",
    "AWS_ENDPOINT_URL_S3": "boto3/botocore: the S3 endpoint (set from S3_ENDPOINT_URL for workers)",
    "MLFLOW_S3_ENDPOINT_URL": "MLflow: the S3 endpoint of its artifact store",
    "MLFLOW_BACKEND_STORE_URI": "`mlflow server`: its backend store (Postgres in production), read from the environment",
    "FEAST_S3_ENDPOINT_URL": "Feast: the S3 endpoint of its file registry store",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "`mlflow server`: its job-runner processes (`asgard up` sets it false)",
}
"""Variables that are not settings but that Ray, boto3, Feast or MLflow read, with who reads each."""

_NAME = re.compile(
    r"(?<![A-Za-z0-9_])"
    rf"((?:{'|'.join(FAMILIES)})_[A-Z0-9_]*(?:(?:<[A-Za-z_]+>|\*)[A-Z0-9_]*)*)"
    r"(?![A-Za-z0-9])"
)
_PLACEHOLDER = re.compile(r"<[A-Za-z_]+>|\*")


def setting_names() -> set[str]:
    """Every ``Settings`` field as its environment variable (upper-cased).

    Returns:
        The upper-cased field names.
    """
    return {name.upper() for name in Settings.model_fields}


def documented_names(text: str) -> set[str]:
    """The environment variable names of the checked families in ``text``.

    A bare family prefix (``ASGARD_``, as in "names start with ASGARD_") is not a name and is skipped.

    Args:
        text: Markdown.

    Returns:
        Names as written, placeholders included (``ASGARD_MAX_RUNNING_JOBS_<KIND>``).
    """
    return {name for name in _NAME.findall(text) if not name.endswith("_") or _PLACEHOLDER.search(name)}


def unknown_names(text: str, known: set[str]) -> set[str]:
    """The names in ``text`` that are neither in ``known`` nor, for a placeholder, match any of it.

    Args:
        text: Markdown.
        known: The names that exist (settings and ``EXTERNAL``).

    Returns:
        The names that do not exist.
    """
    unknown = set()
    for name in documented_names(text):
        if _PLACEHOLDER.search(name):
            pattern = re.compile(
                "".join("[A-Z0-9_]+" if _PLACEHOLDER.fullmatch(part) else re.escape(part) for part in re.split(r"(<[A-Za-z_]+>|\*)", name))
            )
            if not any(pattern.fullmatch(k) for k in known):
                unknown.add(name)
        elif name not in known:
            unknown.add(name)
    return unknown


def test_the_docs_exist() -> None:
    """The guide, the reference pages and the bench page are where the README links to them."""
    names = {p.relative_to(ROOT).as_posix() for p in DOCS if p.is_file()}
    expected = {"README.md", "bench/README.md"} | {
        f"docs/{page}.md" for page in ("api", "configuration", "security", "operations", "architecture", "production")
    }
    assert expected <= names, sorted(expected - names)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_variable_the_docs_name_is_a_setting(path: Path) -> None:
    """Each documented ``ASGARD_*`` / seed-family variable is a ``Settings`` field or a known external one."""
    unknown = unknown_names(path.read_text(), setting_names() | set(EXTERNAL))
    assert not unknown, (
        f"{path.relative_to(ROOT)} names variables that no Settings field reads: {sorted(unknown)}; "
        "fix the name, add the field to asgard_ray/config.py, or (for a variable Ray, boto3, Feast or MLflow "
        "reads itself) add it to EXTERNAL with who reads it"
    )


def test_every_setting_is_on_the_configuration_page() -> None:
    """``docs/configuration.md`` lists every ``Settings`` field by its environment variable."""
    listed = documented_names(CONFIGURATION.read_text())
    missing = sorted(setting_names() - listed)
    assert not missing, f"docs/configuration.md does not list {missing}; add a line per field, in its group"


def test_the_check_catches_a_variable_that_does_not_exist() -> None:
    """A made-up name fails, alone, in a command line or as a placeholder that matches nothing."""
    known = setting_names() | set(EXTERNAL)
    text = "Set `ASGARD_FOO=1`, then ASGARD_MAX_RUNNING_JOBS_<KIND>, TRINO_* and ASGARD_NOPE_<X> and export TRINO_HOSTNAME."
    assert unknown_names(text, known) == {"ASGARD_FOO", "ASGARD_NOPE_<X>", "TRINO_HOSTNAME"}
    assert documented_names("names start with `ASGARD_`; the package is asgard_ray") == set()


def test_external_variables_are_not_settings() -> None:
    """``EXTERNAL`` holds only what ``Settings`` does not read, each with who reads it."""
    assert not set(EXTERNAL) & setting_names()
    assert all(who.strip() for who in EXTERNAL.values())


def test_the_readme_stays_a_guide() -> None:
    """The README stays within its size limit and its relative links lead to files that exist."""
    assert len((ROOT / "README.md").read_bytes()) <= README_LIMIT_BYTES
    for path in DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
            if "://" in target:
                continue
            assert (path.parent / target).exists(), f"{path.relative_to(ROOT)} links to {target}, which does not exist"
