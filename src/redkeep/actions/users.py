"""`redkeep users`: list ACL users; rotate a password with no downtime.

Rotation is two steps (the Redis docs' procedure). `rotate` adds a new password next to the
old one and records it in `.env`; clients move over at their pace, both passwords working.
`finish-rotation` then removes every password but the one in `.env`. The server is changed
before `.env`, so a failure in between leaves `.env` with a password that still works.
"""

import contextlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import redis

from redkeep.actions.locate import load_bundle, target_for
from redkeep.app import Application
from redkeep.bundle import Bundle
from redkeep.envfile import generate_password, update_env
from redkeep.errors import RedkeepError, UsageError
from redkeep.fsutil import SECRET_MODE
from redkeep.redis.acl import AclUser, parse_getuser
from redkeep.redis.client import connect, explain_failure, session
from redkeep.redis.target import ConnectionOptions, Target
from redkeep.render.acl import password_hash
from redkeep.render.env import PASSWORD_KEYS, app_url


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


@dataclass(frozen=True)
class UsersRequest:
    """The flags of `redkeep users list`."""

    connection: ConnectionOptions = ConnectionOptions()
    directory: Path | None = None


@dataclass(frozen=True)
class RotationRequest:
    """The flags of `redkeep users rotate USER` and `finish-rotation USER`."""

    user: str
    connection: ConnectionOptions = ConnectionOptions()
    directory: Path | None = None


def run_list(app: Application, request: UsersRequest) -> list[UserInfo]:
    """The users of the server asked for (else the bundle's), read as its admin."""
    bundle = load_bundle(app, request.directory, required=False)
    target = target_for(request.connection, bundle, "admin")
    with session(target) as client:
        return list_users(client, target)


def run_rotation(app: Application, request: RotationRequest, finish: bool) -> RotationResult:
    """Start a rotation of `request.user`'s password (or, `finish`, end it) on the bundle's
    own Redis as its admin, unless --url names another."""
    bundle = load_bundle(app, request.directory)
    target = target_for(request.connection, bundle, "admin", prefer_bundle=True)
    step = finish_rotation if finish else rotate
    with session(target) as client:
        return step(bundle, client, target, request.user)


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


def rotate(bundle: Bundle, client: redis.Redis, target: Target, user: str) -> RotationResult:
    """Add a new password for `user`, keep the old one valid, save the ACL, update `.env`."""
    env_key = _env_key(user)
    current = bundle.password(user)
    hashes = _server_hashes(client, target, user)
    if password_hash(current) not in hashes:
        raise RedkeepError(
            f"the {env_key} in {bundle.env_path} is not a password of '{user}' on "
            f"{target.where}; refusing to rotate (is .env from another deployment?)"
        )
    if len(hashes) > 1:
        raise RedkeepError(
            f"'{user}' already has {len(hashes)} passwords: a rotation is in progress; "
            f"run `redkeep users finish-rotation {user}` first"
        )
    new = generate_password()
    _acl(client, target, "ACL SETUSER", "ACL", "SETUSER", user, f">{new}")
    try:
        _prove_login(target, user, new)
        _acl(client, target, "ACL SAVE", "ACL", "SAVE")
    except RedkeepError:
        _acl(client, target, "ACL SETUSER", "ACL", "SETUSER", user, f"<{new}")
        raise
    _private_acl_file(bundle)
    updates = {env_key: new}
    if user == "app":
        updates |= {"REDIS_PASSWORD": new, "REDIS_URL": app_url(bundle.settings, new)}
    update_env(bundle.env_path, updates)
    return RotationResult(user, "started", len(hashes) + 1, sorted(updates), str(bundle.env_path))


def finish_rotation(
    bundle: Bundle, client: redis.Redis, target: Target, user: str
) -> RotationResult:
    """Remove every password of `user` except the one in `.env`; save the ACL."""
    env_key = _env_key(user)
    keep = password_hash(bundle.password(user))
    hashes = _server_hashes(client, target, user)
    if keep not in hashes:
        raise RedkeepError(
            f"the {env_key} in {bundle.env_path} is not a password of '{user}' on "
            f"{target.where}; refusing to remove the others, which would lock '{user}' out"
        )
    old = [digest for digest in hashes if digest != keep]
    if old:
        _acl(client, target, "ACL SETUSER", "ACL", "SETUSER", user, *[f"!{h}" for h in old])
        _acl(client, target, "ACL SAVE", "ACL", "SAVE")
        _private_acl_file(bundle)
    step = "finished" if old else "nothing to finish"
    return RotationResult(user, step, 1, [], str(bundle.env_path))


def _env_key(user: str) -> str:
    if user not in PASSWORD_KEYS:
        raise UsageError(
            f"redkeep keeps the passwords of {', '.join(PASSWORD_KEYS)} in .env; "
            f"'{user}' is not one of them"
        )
    return PASSWORD_KEYS[user]


def _server_hashes(client: redis.Redis, target: Target, user: str) -> list[str]:
    found = get_user(client, target, user)
    if found is None:
        raise RedkeepError(f"no ACL user '{user}' on {target.where}")
    return list(found.passwords)


def _acl(client: redis.Redis, target: Target, label: str, *args: str) -> None:
    try:
        client.execute_command(*args)
    except redis.RedisError as error:
        raise explain_failure(error, target, label) from None


def _prove_login(target: Target, user: str, password: str) -> None:
    """Log in with the new password on a fresh connection before anyone depends on it."""
    probe = connect(replace(target, username=user, password=password, password_source="new"))
    probe.close()


def _private_acl_file(bundle: Bundle) -> None:
    """ACL SAVE writes users.acl with the server's umask; hashes stay private to the owner."""
    # The file may belong to another user (a container's); then it is not ours to change.
    with contextlib.suppress(OSError):
        bundle.acl_path.chmod(SECRET_MODE)
