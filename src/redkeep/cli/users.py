"""`redkeep users`: list, rotate, finish-rotation."""

from pathlib import Path

import click

from redkeep.actions.users import (
    RotationRequest,
    RotationResult,
    UsersRequest,
    run_rotation,
)
from redkeep.actions.users_list import GROUP_TITLES, DeploymentUsers, Variant, run_list
from redkeep.app import Application
from redkeep.cli.options import connection_options, dir_option, json_option
from redkeep.errors import ExitStatus, RedkeepError
from redkeep.redis.target import ConnectionOptions

# A user name longer than NAME_SHOWN is shown as its head and its tail: names that share a long
# prefix (app_..._ro, app_..._root) differ at the end. --json has them whole.
NAME_SHOWN, NAME_HEAD, NAME_TAIL = 64, 40, 16


@click.group(name="users")
def users_group() -> None:
    """ACL users and zero-downtime password rotation."""


@users_group.command(name="list")
@connection_options
@dir_option
@json_option
@click.option(
    "--all-nodes",
    is_flag=True,
    help="Every node of the deployment of --url (found with CLUSTER NODES, Sentinel or INFO "
    "replication), compared.",
)
@click.pass_obj
def list_command(
    app: Application,
    connection: ConnectionOptions,
    directory: Path | None,
    as_json: bool,
    all_nodes: bool,
) -> int:
    """List ACL users: enabled, password count, rules. Never shows password hashes.

    A sentinel or cluster bundle (or --all-nodes): every data node and Sentinel, each user
    compared between them; a user that differs is listed once per variant with the nodes that
    have it. Exit 1 when a user differs, 3 when a node could not be read (both named on
    stderr).
    """
    app.json_mode = as_json
    request = UsersRequest(connection=connection, directory=directory, all_nodes=all_nodes)
    found = run_list(app, request)
    if isinstance(found, DeploymentUsers):
        return _show_deployment(app, found, as_json)
    if as_json:
        app.emit_json([user.to_json() for user in found])
        return ExitStatus.OK
    rows = [
        (
            shown_name(user.name),
            "on" if user.enabled else "off",
            "nopass" if user.nopass else str(user.password_count),
            user.keys,
            user.channels,
            user.commands,
        )
        for user in found
    ]
    app.table(("user", "state", "passwords", "keys", "channels", "commands"), rows)
    return ExitStatus.OK


def _show_deployment(app: Application, found: DeploymentUsers, as_json: bool) -> int:
    """The nodes, then each group's users (one row per variant); what differs and what could
    not be read on stderr. Exit 3 if a node was not read, else 1 if a user differs."""
    if as_json:
        app.emit_json(found.to_json())
    app.table(
        ("node", "role", "address", "users"),
        [
            (
                node.name,
                node.role,
                node.address,
                len(node.users) if node.users is not None else f"NOT READ: {node.error}",
            )
            for node in found.nodes
        ],
        title=f"{found.topology}: {len(found.nodes)} nodes",
    )
    for group, title in GROUP_TITLES.items():
        rows = []
        for user in (user for user in found.users if user.group == group):
            for variant in user.variants:
                rows.append(
                    (shown_name(user.name), "same" if user.same else "DIFFERS", *_cells(variant),
                     _where(variant, found.group_size(group)))
                )  # fmt: skip
        if rows:
            columns = ("user", "nodes agree", "state", "passwords", "keys", "channels")
            app.table((*columns, "commands", "on"), rows, title=f"\n{title}")
    for node in found.unread:
        where = f" ({node.address})" if node.address != node.name else ""
        app.error(f"redkeep: {node.name}{where} could not be read: {node.error}")
    for user in found.differing:
        versions, seen = [], False
        for variant in user.variants:
            label = "missing" if variant.user is None else ("another" if seen else "one version")
            seen = seen or variant.user is not None
            versions.append(f"{label} on {', '.join(variant.nodes)}")
        app.error(
            f"redkeep: '{shown_name(user.name)}' differs between the {GROUP_TITLES[user.group]} "
            f"({', '.join(user.differs_in)}): {'; '.join(versions)}"
        )
    if found.unread:
        return ExitStatus.UNREACHABLE
    return ExitStatus.FAILURE if found.differing else ExitStatus.OK


def shown_name(name: str) -> str:
    """A user name as a table or message shows it: whole up to NAME_SHOWN characters, else
    its head and its tail around '…', then its length (ACL names have no length limit)."""
    if len(name) <= NAME_SHOWN:
        return name
    return f"{name[:NAME_HEAD]}…{name[-NAME_TAIL:]} ({len(name)} characters)"


def _cells(variant: Variant) -> tuple[str, ...]:
    user = variant.user
    if user is None:
        return ("missing", "", "", "", "")
    passwords = "nopass" if user.nopass else str(user.password_count)
    if variant.env_password is not None:  # whether .env's password is one of them
        held = "incl. .env's" if user.password_count > 1 else ".env's"
        passwords += f" ({held})" if variant.env_password else " (not .env's)"
    return ("on" if user.enabled else "off", passwords, user.keys, user.channels, user.commands)


def _where(variant: Variant, group_size: int) -> str:
    if len(variant.nodes) == group_size:
        return f"all {group_size}"
    return ", ".join(variant.nodes)


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
    if result.proxy and not result.proxy_problem:
        app.say(result.proxy)
    app.say(f"Move clients to it, then run: redkeep users finish-rotation {user}")
    if result.proxy_problem:  # the rotation holds; the proxy must be fixed before finishing
        raise RedkeepError(
            f"the bundle's proxy was not seen following the Sentinels after the rotation: "
            f"{result.proxy_problem}; fix it before `finish-rotation`"
        )


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
        if result.proxy:
            app.say(result.proxy)
    else:
        app.say(f"'{user}' has a single password already; nothing to finish")
        if result.saved:  # a finish cut short may have left the old one in the files
            app.say(f"Each node saved its ACL file again: {', '.join(result.saved)}.")


def _on(result: RotationResult) -> str:
    """' on redis-0, redis-1, sentinel-0' for a deployment of many nodes."""
    return f" on {', '.join(result.nodes)}" if len(result.nodes) > 1 else ""
