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

    For a sentinel or cluster bundle: exit 0 only when the whole deployment is healthy (a
    primary with its replicas in sync and a Sentinel quorum, or cluster_state ok with all
    16384 slots served); else 1, one line per problem. --url asks one server instead.

    Always 0 or 1: unlike the other commands it does not exit 3 when it cannot connect or
    log in, because Docker's HEALTHCHECK defines only 0 (healthy) and 1 (unhealthy).

    Inside a bundle it logs in as the bundle's least-privileged `exporter` user.
    """
    app.json_mode = as_json
    result = run_health(app, HealthRequest(connection=connection, directory=directory))
    if as_json:
        app.emit_json(result.to_json())
    elif result.healthy and result.topology != "standalone":
        app.say(f"healthy: {result.topology} deployment: {result.detail}")
    elif result.healthy:
        app.say(f"healthy: PONG from {result.url} in {result.latency_ms} ms")
    elif result.topology != "standalone":
        app.error(f"unhealthy: {result.topology} deployment:")
        for line in result.problem_lines():
            app.error(f"  {line}")
    else:
        app.error(f"unhealthy: {result.detail}")
    return ExitStatus.OK if result.healthy else ExitStatus.FAILURE
