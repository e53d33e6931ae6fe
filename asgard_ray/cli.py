"""The ``asgard`` command: the embedded stack and the demo workflow."""

from __future__ import annotations

import logging

import typer
from rich.console import Console
from rich.table import Table

from asgard_ray.config import Settings

app = typer.Typer(help="Asgard MLOps on Ray.", no_args_is_help=True, add_completion=False)
console = Console()


def _settings() -> Settings:
    return Settings()


def _print_status(rows) -> None:  # noqa: ANN001
    colour = {"up": "green", "down": "red", "starting": "yellow", "orphan": "magenta"}
    table = Table("service", "state", "where", "pids")
    for row in rows:
        table.add_row(row.name, f"[{colour[row.state]}]{row.state}[/]", row.url, ",".join(map(str, row.pids)))
    console.print(table)
    if any(row.state == "orphan" for row in rows):
        console.print(
            "[magenta]orphan[/]: something answers on that port, but the process this stack started is gone; "
            "`asgard down` then `asgard up` replaces it (or stop the foreign process)."
        )
    settings = _settings()
    if settings.token_path:
        console.print(
            f"Ray dashboard and `ray job submit` need the auth token ({settings.token_path}): "
            '[bold]asgard token[/] prints it; [bold]eval "$(asgard token --env)"[/] sets it for this shell.'
        )


@app.command()
def up(serve: bool = typer.Option(True, help="Deploy the Serve control API too.")) -> None:
    """Start the embedded stack (Ray, S3, MLflow, Serve API) on loopback; idempotent, restarts dead services."""
    from asgard_ray.local import StackError
    from asgard_ray.local import up as stack_up

    logging.basicConfig(level=logging.WARNING)
    settings = _settings()
    try:
        with console.status("starting the embedded stack (Ray, S3, MLflow, Serve) and warming the API..."):
            rows = stack_up(settings, serve=serve)
    except StackError as exc:
        typer.echo(f"asgard up failed: {exc}", err=True)  # plain text: paths and log lines stay unwrapped
        raise typer.Exit(1) from None
    _print_status(rows)


@app.command()
def down() -> None:
    """Stop what ``asgard up`` started, whole process trees included (state stays under ASGARD_HOME)."""
    from asgard_ray.local import down as stack_down

    stopped = stack_down(_settings())
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@app.command()
def status() -> None:
    """Show each service of the embedded stack: up, down, starting, or orphan."""
    from asgard_ray.local import status as stack_status

    _print_status(stack_status(_settings()))


@app.command()
def token(env: bool = typer.Option(False, "--env", help="Print shell export lines instead of the bare token.")) -> None:
    """Print the embedded stack's Ray auth token (for the dashboard's login dialog and `ray job submit`)."""
    from asgard_ray.runtime import read_token

    settings = _settings()
    try:
        value = read_token(settings)
    except FileNotFoundError:
        typer.echo(f"no token yet at {settings.token_path}; run `asgard up` first", err=True)
        raise typer.Exit(1) from None
    if env:
        typer.echo(f"export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={settings.token_path}")
    else:
        typer.echo(value)


@app.command()
def demo() -> None:
    """Bring the stack up and run the seed's workflow over HTTP."""
    import warnings

    from asgard_ray.demo import run_demo
    from asgard_ray.local import StackError

    warnings.filterwarnings("ignore", category=DeprecationWarning)  # Ray Data's config deprecations, per call
    logging.basicConfig(level=logging.WARNING)
    try:
        run_demo(_settings(), console)
    except StackError as exc:
        typer.echo(f"the embedded stack did not start: {exc}", err=True)
        raise typer.Exit(1) from None


# --- the API, mirrored: each command sends the seed's request body to the control API ------------

features_app = typer.Typer(help="Feature views (/feast/features).", no_args_is_help=True)
registry_app = typer.Typer(help="Model registry (/mlops/registry).", no_args_is_help=True)
monitor_app = typer.Typer(help="Monitoring (/mlops/monitoring).", no_args_is_help=True)
jobs_app = typer.Typer(help="Ray jobs on the cluster (the Jobs API of the dashboard).", no_args_is_help=True)
app.add_typer(features_app, name="features")
app.add_typer(registry_app, name="registry")
app.add_typer(monitor_app, name="monitor")
app.add_typer(jobs_app, name="jobs")

RequestArg = typer.Argument(..., help="Request body: a JSON file, @file, or inline JSON.")


def _call(method: str, path: str, body: dict | None = None, *, progress: str | None = None) -> dict:
    """Call the control API and print the JSON answer; exit 1 on an error status."""
    import json

    import httpx

    from asgard_ray.api.security import load_keys

    settings = _settings()
    keys = load_keys(settings)
    headers = {"Authorization": f"Bearer {keys.write[0].decode()}"} if keys.write else {}
    with console.status(progress or f"{method} {path} ..."):
        resp = httpx.request(method, f"{settings.api_url}{path}", json=body, headers=headers, timeout=3600)
    try:
        data = resp.json()
    except ValueError:
        data = {"error": resp.text}
    console.print_json(json.dumps(data, default=str))
    if resp.status_code >= 400:
        raise typer.Exit(1)
    return data


def _links(*extra: tuple[str, str]) -> None:
    settings = _settings()
    for name, url in (("dashboard", settings.dashboard_url), ("mlflow", settings.tracking_uri), *extra):
        console.print(f"[dim]{name}:[/] {url}")


@features_app.command("register")
def features_register(request: str = RequestArg) -> None:
    """Register a feature view (the seed's POST /feast/features body)."""
    from asgard_ray.entrypoints import load_request

    _call("POST", "/feast/features", load_request(request))


@features_app.command("list")
def features_list() -> None:
    """List the registered feature views."""
    _call("GET", "/feast/features")


@app.command()
def train(request: str = RequestArg) -> None:
    """Train with trials (the seed's POST /mlops/models body)."""
    from asgard_ray.entrypoints import load_request

    _call("POST", "/mlops/models", load_request(request), progress="training: trials run on Ray...")
    _links()


@registry_app.command("register")
def registry_register(request: str = RequestArg) -> None:
    """Register a run's model as a new version (the seed's POST /mlops/registry body)."""
    from asgard_ray.entrypoints import load_request

    _call("POST", "/mlops/registry", load_request(request))


@registry_app.command("alias")
def registry_alias(model_name: str, alias: str, version: str) -> None:
    """Point an alias (e.g. champion) at a version."""
    _call("PUT", f"/mlops/registry/{model_name}/aliases/{alias}", {"version": version})


@app.command()
def score(request: str = RequestArg) -> None:
    """Batch-score entities (the seed's POST /mlops/serve/batch body)."""
    from asgard_ray.entrypoints import load_request

    _call("POST", "/mlops/serve/batch", load_request(request), progress="scoring on Ray Data...")
    _links()


@monitor_app.command("log")
def monitor_log(request: str = RequestArg) -> None:
    """Log monitoring metrics (the seed's POST /mlops/monitoring body)."""
    from asgard_ray.entrypoints import load_request

    _call("POST", "/mlops/monitoring", load_request(request))


@monitor_app.command("history")
def monitor_history(
    model_name: str,
    model_version: str | None = typer.Option(None, help="Only this version."),
    metric_type: str | None = typer.Option(None, help="Only this metric type."),
    limit: int = typer.Option(100, help="At most this many records."),
) -> None:
    """Show a model's monitoring history."""
    body = {"model_name": model_name, "model_version": model_version, "metric_type": metric_type, "limit": limit}
    _call("POST", "/mlops/monitoring/history", {k: v for k, v in body.items() if v is not None})


@monitor_app.command("compute")
def monitor_compute(job_id: str = typer.Argument(..., help="A batch scoring job id.")) -> None:
    """Compute drift, quality and performance of a batch job's output against the training reference."""
    _call("POST", "/mlops/monitoring/compute", {"job_id": job_id, "wait_s": 600}, progress="computing drift on Ray Data...")
    _links(("monitoring page", f"{_settings().api_url}/mlops/monitoring/dashboard"))


def _job_client():  # noqa: ANN202
    from ray.job_submission import JobSubmissionClient

    from asgard_ray.runtime import prepare_auth

    settings = _settings()
    prepare_auth(settings)
    return JobSubmissionClient(settings.dashboard_url)


@jobs_app.command("list")
def jobs_list() -> None:
    """List Ray jobs (submitted with ``ray job submit``) and their status."""
    table = Table("job id", "status", "entrypoint", "started")
    for job in sorted(_job_client().list_jobs(), key=lambda j: j.start_time or 0, reverse=True):
        table.add_row(job.submission_id or job.job_id or "", str(job.status), (job.entrypoint or "")[:60], str(job.start_time or ""))
    console.print(table)


@jobs_app.command("logs")
def jobs_logs(job_id: str) -> None:
    """Print a Ray job's logs."""
    console.print(_job_client().get_job_logs(job_id), markup=False, highlight=False)


if __name__ == "__main__":
    app()
