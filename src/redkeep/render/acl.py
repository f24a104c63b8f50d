"""The ACL file: one `user` line per role, passwords as SHA-256 hashes."""

import hashlib
from functools import cache
from importlib import resources

import yaml

from redkeep.config.schema import Settings
from redkeep.render.env import STANDALONE_ROLES, password_roles

ROLES = STANDALONE_ROLES
APP_CLOSING = ["-@dangerous", "-@admin"]
# What a cluster-aware client runs besides data commands: learn which node serves which slot,
# follow ASK redirections, read from replicas.
CLUSTER_CLIENT = [
    "+cluster|slots",
    "+cluster|shards",
    "+cluster|nodes",
    "+asking",
    "+readonly",
    "+readwrite",
]


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
    if role == "exporter" and settings.exporter.checks:
        rules += check_rules(settings)
    if role == "exporter" and settings.deployment.topology == "cluster":
        rules.append("+cluster|nodes")  # each node's slots and links, for status and health
    if role == "app":
        app = settings.users.app
        # Whatever the configured rules grant, dangerous and admin commands stay closed.
        commands = [rule for rule in app.commands if rule not in APP_CLOSING] + APP_CLOSING
        rules += ["resetkeys", *app.keys, "resetchannels", *app.channels, *commands]
        if settings.deployment.topology == "cluster":
            rules += CLUSTER_CLIENT  # not in @dangerous or @admin: after the closing rules
    return rules


def render_acl(
    settings: Settings, passwords: dict[str, str], kept: dict[str, list[str]] | None = None
) -> str:
    """Return users.acl: `default` switched off, then each role with its password hashes.

    `kept` holds hashes already valid for a role (from the existing file): they stay valid,
    so re-rendering a bundle never locks out a client that still uses an older password.
    """
    lines = ["user default " + " ".join(role_rules()["default"])]
    for role in password_roles(settings.deployment.topology):
        hashes = [password_hash(passwords[role])]
        hashes += [digest for digest in (kept or {}).get(role, []) if digest not in hashes]
        secrets = " ".join(f"#{digest}" for digest in hashes)
        lines.append(f"user {role} {secrets} {' '.join(user_rules(role, settings))}")
    return "\n".join(lines) + "\n"


def hashes_in(acl_text: str) -> dict[str, list[str]]:
    """The password hashes of each user in an ACL file's text."""
    found: dict[str, list[str]] = {}
    for line in acl_text.splitlines():
        tokens = line.split()
        if len(tokens) >= 2 and tokens[0] == "user":
            found[tokens[1]] = [token[1:] for token in tokens[2:] if token.startswith("#")]
    return found


# The read-only commands each kind of application check sends.
CHECK_COMMANDS = {
    "key_age": ("+get", "+hget"),
    "hash_counters": ("+hmget",),
    "key_count": ("+scan",),
    "ttl": ("+pttl",),
    "exists": ("+exists",),
    "stream_length": ("+xlen",),
    "list_length": ("+llen",),
    "lua": ("+eval_ro",),
}


def check_rules(settings: Settings) -> list[str]:
    """Extra exporter rules for the configured checks: their commands, read-only on their keys."""
    commands, keys = [], []
    for check in settings.exporter.checks:
        commands += [command for command in CHECK_COMMANDS[check.type] if command not in commands]
        for key in [check.key, check.pattern, *check.keys]:
            if key and f"%R~{key}" not in keys:
                keys.append(f"%R~{key}")
    return [*keys, *commands]
