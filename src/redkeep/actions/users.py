"""`redkeep users`: list ACL users; rotate a password with no downtime.

Rotation is two steps (the Redis docs' procedure). `rotate` adds a new password next to the
old one and records it in `.env`; clients move over at their pace, both passwords working.
`finish-rotation` then removes every password but the one in `.env`. The server is changed
before `.env`, so a failure in between leaves `.env` with a password that still works.
"""

import contextlib
from dataclasses import dataclass, replace
from typing import Any

import redis

from redkeep.bundle import Bundle
from redkeep.envfile import generate_password, update_env
from redkeep.errors import RedkeepError, UsageError
from redkeep.fsutil import SECRET_MODE
from redkeep.redis.client import connect, explain_failure
from redkeep.redis.target import Target
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

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def get_user(client: redis.Redis, target: Target, name: str) -> dict[str, Any] | None:
    """`ACL GETUSER name` as a dict of field -> value (lists joined for 6.x servers)."""
    try:
        reply = client.execute_command("ACL", "GETUSER", name)
    except redis.RedisError as error:
        raise explain_failure(error, target, "ACL GETUSER") from None
    if reply is None:
        return None
    if isinstance(reply, dict):  # RESP3
        return reply
    return dict(zip(reply[::2], reply[1::2], strict=True))


def list_users(client: redis.Redis, target: Target) -> list[UserInfo]:
    """Every ACL user with a summary of its rules; password hashes are counted, not shown."""
    try:
        names = sorted(client.execute_command("ACL", "USERS"))
    except redis.RedisError as error:
        raise explain_failure(error, target, "ACL USERS") from None
    users = []
    for name in names:
        info = get_user(client, target, name)
        if info is None:  # deleted between the two commands
            continue
        flags = list(info.get("flags", []))
        users.append(
            UserInfo(
                name=name,
                enabled="on" in flags,
                password_count=len(info.get("passwords", [])),
                nopass="nopass" in flags,
                commands=_text(info.get("commands")),
                keys=_text(info.get("keys")),
                channels=_text(info.get("channels")),
            )
        )
    return users


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return " ".join(str(item) for item in value)
    return "" if value is None else str(value)


@dataclass(frozen=True)
class RotationResult:
    user: str
    step: str
    passwords_now: int
    env_keys: list[str]


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
    return RotationResult(user, "started", len(hashes) + 1, sorted(updates))


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
    return RotationResult(user, "finished" if old else "nothing to finish", 1, [])


def _env_key(user: str) -> str:
    if user not in PASSWORD_KEYS:
        raise UsageError(
            f"redkeep keeps the passwords of {', '.join(PASSWORD_KEYS)} in .env; "
            f"'{user}' is not one of them"
        )
    return PASSWORD_KEYS[user]


def _server_hashes(client: redis.Redis, target: Target, user: str) -> list[str]:
    info = get_user(client, target, user)
    if info is None:
        raise RedkeepError(f"no ACL user '{user}' on {target.where}")
    return list(info.get("passwords", []))


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
