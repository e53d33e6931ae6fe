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
    table = Table("service", "running", "where", "pids")
    for row in rows:
        table.add_row(row.name, "[green]yes[/]" if row.running else "[red]no[/]", row.url, ",".join(map(str, row.pids)))
    console.print(table)


@app.command()
def up(serve: bool = typer.Option(True, help="Deploy the Serve control API too.")) -> None:
    """Start the embedded stack (Ray, S3, MLflow, Serve API) on loopback; idempotent."""
    from asgard_ray.local import up as stack_up

    logging.basicConfig(level=logging.WARNING)
    settings = _settings()
    with console.status("starting the embedded stack (Ray, S3, MLflow, Serve)..."):
        rows = stack_up(settings, serve=serve)
    _print_status(rows)


@app.command()
def down() -> None:
    """Stop what ``asgard up`` started (state stays under ASGARD_HOME)."""
    from asgard_ray.local import down as stack_down

    stopped = stack_down(_settings())
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@app.command()
def status() -> None:
    """Show each service of the embedded stack."""
    from asgard_ray.local import status as stack_status

    _print_status(stack_status(_settings()))


@app.command()
def demo() -> None:
    """Bring the stack up and run the seed's workflow over HTTP."""
    from asgard_ray.demo import run_demo

    logging.basicConfig(level=logging.WARNING)
    run_demo(_settings(), console)


if __name__ == "__main__":
    app()
