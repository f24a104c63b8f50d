"""`redkeep health`: exit 0 when Redis answers PING over the configured TLS and ACL, else 1."""

from pathlib import Path

import click

from redkeep.actions.health import HealthRequest, run_health
from redkeep.app import Application
from redkeep.cli.options import connection_options, dir_option, json_option
from redkeep.errors import ExitStatus
from redkeep.redis.target import ConnectionOptions


@click.command()
@connection_options
@dir_option
@json_option
@click.pass_obj
def health(
    app: Application, connection: ConnectionOptions, directory: Path | None, as_json: bool
) -> int:
    """Exit 0 if Redis answers PING, else 1 with the reason (fit for a container healthcheck).

    Always 0 or 1: unlike the other commands it does not exit 3 when it cannot connect or
    log in, because Docker's HEALTHCHECK defines only 0 (healthy) and 1 (unhealthy).

    Inside a bundle it logs in as the bundle's least-privileged `exporter` user.
    """
    app.json_mode = as_json
    result = run_health(app, HealthRequest(connection=connection, directory=directory))
    if as_json:
        app.emit_json(result.to_json())
    elif result.healthy:
        app.say(f"healthy: PONG from {result.url} in {result.latency_ms} ms")
    else:
        app.error(f"unhealthy: {result.detail}")
    return ExitStatus.OK if result.healthy else ExitStatus.FAILURE
