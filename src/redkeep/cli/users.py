"""`redkeep users`: list, rotate, finish-rotation."""

from pathlib import Path

import click

from redkeep.actions.users import (
    RotationRequest,
    RotationResult,
    UsersRequest,
    run_list,
    run_rotation,
)
from redkeep.app import Application
from redkeep.cli.options import connection_options, dir_option, json_option
from redkeep.redis.target import ConnectionOptions


@click.group(name="users")
def users_group() -> None:
    """ACL users and zero-downtime password rotation."""


@users_group.command(name="list")
@connection_options
@dir_option
@json_option
@click.pass_obj
def list_command(
    app: Application, connection: ConnectionOptions, directory: Path | None, as_json: bool
) -> None:
    """List ACL users: enabled, password count, rules. Never shows password hashes."""
    app.json_mode = as_json
    users = run_list(app, UsersRequest(connection=connection, directory=directory))
    if as_json:
        app.emit_json([user.to_json() for user in users])
        return
    rows = [
        (
            user.name,
            "on" if user.enabled else "off",
            "nopass" if user.nopass else str(user.password_count),
            user.keys,
            user.channels,
            user.commands,
        )
        for user in users
    ]
    app.table(("user", "state", "passwords", "keys", "channels", "commands"), rows)


@users_group.command()
@click.argument("user")
@connection_options
@dir_option
@click.pass_obj
def rotate(
    app: Application, user: str, connection: ConnectionOptions, directory: Path | None
) -> None:
    """Give USER a new password while the old one keeps working (step 1 of 2).

    Adds the new password with ACL SETUSER on every node that has USER (a sentinel or cluster
    bundle: every data node, and the Sentinels that have it), proves it with a fresh login on
    each, saves each node's ACL file, then writes it to .env. If a node fails, every node is
    rolled back and .env is untouched. Move your clients to the new password, then run
    `redkeep users finish-rotation USER`. Talks to the bundle's own nodes as admin; --url
    names another server (standalone bundles only).
    """
    request = RotationRequest(user=user, connection=connection, directory=directory)
    result = run_rotation(app, request, finish=False)
    app.say(
        f"'{user}' now has {result.passwords_now} valid passwords{_on(result)}; the new one is "
        f"in {result.env_path} ({', '.join(result.env_keys)})."
    )
    if result.links:
        app.say(f"Stored passwords switched to it: {', '.join(result.links)}.")
    app.say(f"Move clients to it, then run: redkeep users finish-rotation {user}")


@users_group.command(name="finish-rotation")
@click.argument("user")
@connection_options
@dir_option
@click.pass_obj
def finish_rotation(
    app: Application, user: str, connection: ConnectionOptions, directory: Path | None
) -> None:
    """Remove USER's old password, keeping only the one in .env (step 2 of 2).

    On every node that has USER, as `rotate`; all or none (every node must answer).
    Connections already logged in stay open; new logins need the new password.
    """
    request = RotationRequest(user=user, connection=connection, directory=directory)
    result = run_rotation(app, request, finish=True)
    if result.step == "finished":
        app.say(f"'{user}' now has only the password in {result.env_path}{_on(result)}")
    else:
        app.say(f"'{user}' has a single password already; nothing to finish")


def _on(result: RotationResult) -> str:
    """' on redis-0, redis-1, sentinel-0' for a deployment of many nodes."""
    return f" on {', '.join(result.nodes)}" if len(result.nodes) > 1 else ""
