"""`redkeep exporter`: the Prometheus exporter (wired in actions/exporter.py)."""

from pathlib import Path

import click

from redkeep.actions.exporter import ExporterRequest, run_exporter
from redkeep.app import Application
from redkeep.cli.options import connection_options, dir_option
from redkeep.redis.target import ConnectionOptions


@click.command()
@connection_options
@dir_option
@click.option("--listen", metavar="HOST:PORT", help="Where to listen (default 127.0.0.1:9121).")
@click.option(
    "--checks",
    "app_checks_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="YAML file with application checks (a list, or {checks: [...]}).",
)
@click.option(
    "--checks-url", "app_checks_url", help="Run the checks against this server (e.g. a replica)."
)
@click.option("--no-main-target", is_flag=True, help="Serve only /scrape?target= (no /metrics).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning"]), default="info")
@click.pass_obj
def exporter(
    app: Application,
    connection: ConnectionOptions,
    directory: Path | None,
    listen: str | None,
    app_checks_file: Path | None,
    app_checks_url: str | None,
    no_main_target: bool,
    log_level: str,
) -> None:
    """Serve Prometheus metrics of Redis, compatible with redis_exporter's names.

    Inside a bundle it logs in as the `exporter` user and reads exporter settings, checks and
    /scrape targets from redkeep.yaml; the endpoint binds to localhost unless told otherwise.
    """
    request = ExporterRequest(
        connection=connection,
        directory=directory,
        listen=listen,
        app_checks_file=app_checks_file,
        app_checks_url=app_checks_url,
        no_main_target=no_main_target,
        log_level=log_level,
    )
    run_exporter(app, request)
