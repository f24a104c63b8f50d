"""`redkeep users`: list, rotate, finish-rotation."""

from pathlib import Path

import click

from redkeep.actions import users as actions
from redkeep.app import Application
from redkeep.cli.options import (
    connection_options,
    dir_option,
    json_option,
    load_bundle,
    target_for,
)
from redkeep.redis.client import session
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
    target = target_for(connection, load_bundle(app, directory, required=False), "admin")
    with session(target) as client:
        users = actions.list_users(client, target)
    if as_json:
        app.emit_json([user.as_dict() for user in users])
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

    Adds the new password with ACL SETUSER, saves the ACL file, writes it to .env. Move your
    clients to the new password, then run `redkeep users finish-rotation USER`. Talks to the
    bundle's own Redis as admin unless --url is given.
    """
    bundle = load_bundle(app, directory)
    target = target_for(connection, bundle, "admin", prefer_bundle=True)
    with session(target) as client:
        result = actions.rotate(bundle, client, target, user)
    app.say(
        f"'{user}' now has {result.passwords_now} valid passwords; the new one is in "
        f"{bundle.env_path} ({', '.join(result.env_keys)})."
    )
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

    Connections already logged in stay open; new logins need the new password.
    """
    bundle = load_bundle(app, directory)
    target = target_for(connection, bundle, "admin", prefer_bundle=True)
    with session(target) as client:
        result = actions.finish_rotation(bundle, client, target, user)
    if result.step == "finished":
        app.say(f"'{user}' now has only the password in {bundle.env_path}")
    else:
        app.say(f"'{user}' has a single password already; nothing to finish")
