"""The ACL file: one `user` line per role, passwords as SHA-256 hashes."""

import hashlib
from functools import cache
from importlib import resources

import yaml

from redkeep.config.schema import Settings

ROLES = ("admin", "app", "exporter", "backup")


@cache
def role_rules() -> dict[str, list[str]]:
    """The packaged base rules of each role (roles.yaml)."""
    data = yaml.safe_load(resources.files("redkeep.render").joinpath("roles.yaml").read_text())
    return {role: [str(rule) for rule in spec["rules"]] for role, spec in data.items()}


def password_hash(password: str) -> str:
    """The hash Redis stores for a password: unsalted SHA-256, lowercase hex."""
    return hashlib.sha256(password.encode()).hexdigest()


def user_rules(role: str, settings: Settings) -> list[str]:
    """The ACL rules of `role` without its password."""
    rules = list(role_rules()[role])
    if role == "app":
        app = settings.users.app
        rules += ["resetkeys", *app.keys, "resetchannels", *app.channels, *app.commands]
    return rules


def render_acl(settings: Settings, passwords: dict[str, str]) -> str:
    """Return users.acl: `default` switched off, then each role with its password hash."""
    lines = ["user default " + " ".join(role_rules()["default"])]
    for role in ROLES:
        rules = " ".join(user_rules(role, settings))
        lines.append(f"user {role} #{password_hash(passwords[role])} {rules}")
    return "\n".join(lines) + "\n"
