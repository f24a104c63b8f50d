"""`redkeep users`: list ACL users; rotate a password with no downtime, on every node.

Rotation is two steps (the Redis docs' procedure). `rotate` adds a new password next to the
old one and records it in `.env`; clients move over at their pace, both passwords working.
`finish-rotation` then removes every password but the one in `.env`.

A sentinel or cluster deployment keeps users per node (ACL is not replicated), so each step
is applied on every node that has the user (data nodes; Sentinels for the users they have),
each node is proven with a fresh login, and only then is anything saved: ACL SAVE on each
node, the links' stored passwords (`actions/links.py`), `.env` last. So at every moment the
password in `.env` works on every node. A failure part-way rolls every node back
(`actions/rollback.py`) and leaves `.env` alone.
"""

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import redis

from redkeep.actions.links import Link, links_for, refresh_rendered
from redkeep.actions.locate import load_bundle
from redkeep.actions.nodes import (
    NodeError,
    NodeSession,
    acl_file,
    admin_sessions,
    config_file,
    every_node,
)
from redkeep.actions.proxy_following import (
    follows_sentinels,
    has_metrics,
    local_proxy_pid,
    reload_and_confirm,
    reload_proxy,
)
from redkeep.actions.rollback import ChangeLog, acl_user, make_private
from redkeep.app import Application
from redkeep.bundle import Bundle
from redkeep.envfile import generate_password, update_env
from redkeep.errors import RedkeepError, UsageError
from redkeep.redis.acl import AclUser, parse_getuser
from redkeep.redis.client import explain_failure
from redkeep.redis.raw import RawConnection
from redkeep.redis.target import ConnectionOptions, Target
from redkeep.render.acl import password_hash
from redkeep.render.env import ALL_PASSWORD_KEYS, PASSWORD_KEYS, app_url, password_roles


@dataclass(frozen=True)
class UserInfo:
    name: str
    enabled: bool
    password_count: int
    nopass: bool
    commands: str
    keys: str
    channels: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RotationResult:
    user: str
    step: str  # "started", "finished" or "nothing to finish"
    passwords_now: int
    env_keys: list[str]  # the .env keys that now hold the new password
    env_path: str  # the bundle's .env
    nodes: list[str] = field(default_factory=list)  # the nodes changed (that have the user)
    links: list[str] = field(default_factory=list)  # stored passwords set: "masterauth on redis-1"
    # The proxy here that logs in to the Sentinels as this user: "" (none), or what it did.
    proxy: str = ""
    saved: list[str] = field(default_factory=list)  # "nothing to finish": files saved again
    proxy_problem: str = ""  # `rotate`: it could not use the new password (nothing rolled back)


@dataclass(frozen=True)
class UsersRequest:
    """The flags of `redkeep users list`."""

    connection: ConnectionOptions = ConnectionOptions()
    directory: Path | None = None
    all_nodes: bool = False  # the whole deployment of the URL (or of the bundle), discovered


@dataclass(frozen=True)
class RotationRequest:
    """The flags of `redkeep users rotate USER` and `finish-rotation USER`."""

    user: str
    connection: ConnectionOptions = ConnectionOptions()
    directory: Path | None = None


def run_rotation(app: Application, request: RotationRequest, finish: bool) -> RotationResult:
    """Start a rotation of `request.user`'s password (or, `finish`, end it) on every node of
    the bundle as its admin; a standalone bundle's one server unless --url names another."""
    bundle = load_bundle(app, request.directory)
    env_key(bundle, request.user)  # an unmanaged user is refused before connecting
    nodes = every_node(bundle, request.connection, "admin")
    step = finish_rotation if finish else rotate
    with admin_sessions(nodes) as sessions:
        return step(bundle, sessions, request.user)


def get_user(client: redis.Redis, target: Target, name: str) -> AclUser | None:
    """`ACL GETUSER name`, or None when there is no such user."""
    try:
        reply = client.execute_command("ACL", "GETUSER", name)
    except redis.RedisError as error:
        raise explain_failure(error, target, "ACL GETUSER") from None
    return parse_getuser(reply)


def list_users(client: redis.Redis, target: Target) -> list[UserInfo]:
    """Every ACL user with a summary of its rules; password hashes are counted, not shown."""
    try:
        names = sorted(client.execute_command("ACL", "USERS"))
    except redis.RedisError as error:
        raise explain_failure(error, target, "ACL USERS") from None
    users = []
    for name in names:
        user = get_user(client, target, name)
        if user is None:  # deleted between the two commands
            continue
        users.append(
            UserInfo(
                name=name,
                enabled=user.enabled,
                password_count=len(user.passwords),
                nopass=user.nopass,
                commands=user.commands,
                keys=user.keys,
                channels=user.channels,
            )
        )
    return users


def rotate(bundle: Bundle, sessions: list[NodeSession], user: str) -> RotationResult:
    """Add a new password for `user` on every node that has it, prove it with a fresh login
    on each, save each node's ACL, switch the links that log in as `user`, then `.env`."""
    key = env_key(bundle, user)
    current = bundle_password(bundle, user)
    holders = holders_of(sessions, user)
    for node, found in holders:
        if password_hash(current) not in found.passwords:
            raise RedkeepError(
                f"the {key} in {bundle.env_path} is not a password of '{user}' on "
                f"{node.label}; refusing to rotate (is .env from another deployment?)"
            )
        if len(found.passwords) > 1:
            raise RedkeepError(
                f"'{user}' already has {len(found.passwords)} passwords on {node.label}: a "
                f"rotation is in progress; run `redkeep users finish-rotation {user}` first"
            )
    links = links_for(sessions, user, bundle.settings.deployment.master_name)
    for link in links:
        if link.current is not None and link.current != current:
            raise RedkeepError(
                f"{link.label} is not the {key} in {bundle.env_path}; refusing to rotate a "
                "password the deployment does not use (set it back, or fix .env)"
            )
    new = generate_password()
    log = ChangeLog(
        user, before={node.name: found for node, found in holders}, secrets=(new, current)
    )
    hint = (
        f"run `redkeep users finish-rotation {user}` once it answers: it removes the "
        "password .env does not hold"
    )
    updates = {key: new}
    if user == "app":
        updates |= {"REDIS_PASSWORD": new, "REDIS_URL": app_url(bundle.settings, new)}
    try:
        done = lambda: bundle_password(bundle, user) == new  # noqa: E731 - .env written
        taken = (
            f"'{user}' has both passwords on every node and .env holds the new one; run "
            f"`redkeep users finish-rotation {user}` once clients have moved"
        )
        what = f"rotating '{user}' failed"
        with log.undone_on_failure(what, hint, ".env is unchanged", done, after=taken):
            for node, _ in holders:
                log.change(
                    node,
                    "ACL SETUSER",
                    ("ACL", "SETUSER", user, f">{new}"),
                    ("ACL", "SETUSER", user, f"<{new}"),
                )
            for node, _ in holders:
                prove_login(node, user, new, "the rotation")
            for node, _ in holders:
                log.write_files(node, "ACL SAVE", lambda node=node: save_acl(bundle, node))
            for link in links:
                _switch(bundle, log, link, new, undo_to=link.current or current)
            _write_env(bundle, updates)
    finally:
        _private_sentinel_configs(bundle, links)
    refresh_rendered(bundle, links, new)
    try:
        proxy, problem = _proxy_after_change(bundle, user)
    except KeyboardInterrupt:  # the rotation stands: say so, not only "interrupted"
        raise RedkeepError(f"interrupted while asking the proxy: {taken}") from None
    return RotationResult(
        user,
        "started",
        len(holders[0][1].passwords) + 1,
        sorted(updates),
        str(bundle.env_path),
        nodes=[node.name for node, _ in holders],
        links=[link.label for link in links],
        proxy=proxy,
        proxy_problem=problem,
    )


def finish_rotation(bundle: Bundle, sessions: list[NodeSession], user: str) -> RotationResult:
    """Remove every password of `user` except the one in `.env`, on every node that has it.

    The links that log in as `user` are set to the `.env` password first (it works before
    and after), then the old passwords go, each node is proven with a fresh login, saved.
    """
    key = env_key(bundle, user)
    kept_password = bundle_password(bundle, user)
    keep = password_hash(kept_password)
    holders = holders_of(sessions, user)
    for node, found in holders:
        if keep not in found.passwords:
            raise RedkeepError(
                f"the {key} in {bundle.env_path} is not a password of '{user}' on "
                f"{node.label}; refusing to remove the others, which would lock '{user}' out"
            )
    old = {
        node.name: [digest for digest in found.passwords if digest != keep]
        for node, found in holders
    }
    links = links_for(sessions, user, bundle.settings.deployment.master_name)
    if not any(old.values()):
        # A finish killed between removing the old passwords and saving left them in the
        # nodes' files, for a restart to bring back: each node saves what it holds now.
        for node, _ in holders:
            save_acl(bundle, node)
        refresh_rendered(bundle, links, kept_password)
        saved = [node.name for node, _ in holders]
        return RotationResult(user, "nothing to finish", 1, [], str(bundle.env_path), saved=saved)
    secrets = (kept_password, *(link.current for link in links if link.current))
    log = ChangeLog(user, before={node.name: found for node, found in holders}, secrets=secrets)
    what = f"finishing the rotation of '{user}' failed"
    hint = f"run `redkeep users finish-rotation {user}` again once it answers"
    try:
        with log.undone_on_failure(what, hint):
            for link in links:
                if link.current != kept_password:
                    _switch(bundle, log, link, kept_password, undo_to=link.current or kept_password)
            changed = [node for node, _ in holders if old[node.name]]
            for node in changed:
                removals = tuple(f"!{digest}" for digest in old[node.name])
                restores = tuple(f"#{digest}" for digest in old[node.name])
                log.change(
                    node,
                    "ACL SETUSER",
                    ("ACL", "SETUSER", user, *removals),
                    ("ACL", "SETUSER", user, *restores),
                )
            for node, _ in holders:
                prove_login(node, user, kept_password, str(bundle.env_path))
            # Every holder, changed now or not: a finish killed part-way may have left the old
            # password in the file of a node that had already dropped it.
            for node, _ in holders:
                log.write_files(node, "ACL SAVE", lambda node=node: save_acl(bundle, node))
            # A proxy that could not log in any more would miss the next failover: the old
            # passwords go back (live and in the files) until it can.
            proxy, problem = _proxy_after_change(bundle, user)
            if problem:
                raise RedkeepError(
                    f"{problem}; the old passwords stay until it logs in with .env's"
                )
    finally:
        _private_sentinel_configs(bundle, links)
    refresh_rendered(bundle, links, kept_password)
    return RotationResult(
        user,
        "finished",
        1,
        [],
        str(bundle.env_path),
        nodes=[node.name for node in changed],
        links=[link.label for link in links],
        proxy=proxy,
    )


def _proxy_after_change(bundle: Bundle, user: str) -> tuple[str, str]:
    """Make the bundle's proxy here that logs in to the Sentinels as `user` do so again now
    (it reads .env at each login) and see a majority of them answer it. (what was done,
    the problem or "")."""
    if user != bundle.settings.proxy.sentinel_user or not follows_sentinels(bundle):
        return "", ""
    pid = local_proxy_pid(bundle)
    if pid is not None and not has_metrics(bundle):
        reload_proxy(bundle, pid)
        return (
            f"The proxy (pid {pid}) was told to log in again (SIGHUP); not confirmed: "
            "proxy.metrics_listen is off, so it cannot be asked.",
            "",
        )
    if pid is None:
        return (
            "No proxy of this bundle runs on this machine; a proxy elsewhere reads .env at "
            "each login (one given REDKEEP_SENTINEL_PASSWORD needs the new password).",
            "",
        )
    problem = reload_and_confirm(bundle)
    if problem:
        return f"The proxy (pid {pid}): {problem}.", problem
    return f"The proxy (pid {pid}) logged in to the Sentinels again with the .env password.", ""


def env_key(bundle: Bundle, user: str) -> str:
    """The .env key of a user redkeep keeps the password of; UsageError for any other."""
    keys = {
        role: ALL_PASSWORD_KEYS[role]
        for role in password_roles(bundle.settings.deployment.topology)
    }
    if user not in keys:
        raise UsageError(
            f"redkeep keeps the passwords of {', '.join(keys)} in .env; '{user}' is not one of them"
        )
    return keys[user]


def bundle_password(bundle: Bundle, user: str) -> str:
    """The user's password in .env; UsageError when it is missing."""
    if user in PASSWORD_KEYS:
        return bundle.password(user)
    key = env_key(bundle, user)
    value = bundle.secrets().get(key)
    if not value:
        raise UsageError(
            f"{bundle.env_path}: {key} is missing; restore .env from your secret store"
        )
    return value


def holders_of(sessions: list[NodeSession], user: str) -> list[tuple[NodeSession, AclUser]]:
    """The nodes that have `user`, with the user as it is there.

    Every data node must have it. Sentinels have only some users (admin, app, exporter, the
    Sentinels' own); a user some Sentinels have and others lack is refused: they must agree.
    """
    found = [(node, acl_user(node, user)) for node in sessions]
    missing = [node for node, acl in found if acl is None and not node.is_sentinel]
    if missing:
        names = ", ".join(node.label for node in missing)
        raise RedkeepError(f"no ACL user '{user}' on {names}")
    sentinels = [(node, acl) for node, acl in found if node.is_sentinel]
    lacking = [node.name for node, acl in sentinels if acl is None]
    if lacking and len(lacking) < len(sentinels):
        raise RedkeepError(
            f"'{user}' exists on some Sentinels but not on {', '.join(lacking)}; the Sentinels "
            "must have the same users: add it there (or remove it from the others) first"
        )
    return [(node, acl) for node, acl in found if acl is not None]


def prove_login(node: NodeSession, user: str, password: str, source: str) -> None:
    """Log in on a fresh connection to the node as `user` with `password` (from `source`, for
    messages): AUTH and nothing else, as a user may have no right to PING. Raise NodeError
    when the node refuses."""
    target = replace(node.node.target, username=user, password=password, password_source=source)
    try:
        probe = RawConnection(target, idle_timeout=target.timeout)
        try:
            probe.login()
        finally:
            probe.close()
    except RedkeepError as error:
        raise NodeError(node, error) from None


def save_acl(bundle: Bundle, node: NodeSession) -> None:
    node.run("ACL SAVE", "ACL", "SAVE")
    make_private(acl_file(bundle, node))


def rewrite_config(bundle: Bundle, node: NodeSession) -> None:
    node.run("CONFIG REWRITE", "CONFIG", "REWRITE")
    make_private(config_file(bundle, node))


def _switch(bundle: Bundle, log: ChangeLog, link: Link, password: str, undo_to: str) -> None:
    """Store `password` in `link`, and keep it at restart."""
    label, command = link.set_command(password)
    log.change(link.session, label, command, link.set_command(undo_to)[1])
    if link.needs_rewrite:
        log.write_files(
            link.session, "CONFIG REWRITE", lambda: rewrite_config(bundle, link.session)
        )


def _private_sentinel_configs(bundle: Bundle, links: list[Link]) -> None:
    """A Sentinel rewrites its config file (with auth-pass in it) with its own umask."""
    for link in links:
        if link.session.is_sentinel:
            make_private(config_file(bundle, link.session))


def _write_env(bundle: Bundle, updates: dict[str, str]) -> None:
    try:
        update_env(bundle.env_path, updates)
    except OSError as error:
        raise RedkeepError(f"cannot write {bundle.env_path}: {error.strerror}") from None
