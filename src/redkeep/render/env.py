"""`.env` (the secrets, 0600) and `.env.example` (the same keys, no secrets)."""

from typing import TYPE_CHECKING

from redkeep.redis.target import parse_host_port

if TYPE_CHECKING:
    from redkeep.config.schema import Settings

PASSWORD_KEYS = {
    "admin": "REDIS_ADMIN_PASSWORD",
    "app": "REDIS_APP_PASSWORD",
    "exporter": "REDIS_EXPORTER_PASSWORD",
    "backup": "REDIS_BACKUP_PASSWORD",
}
# Sentinel and cluster deployments only: replicas log in to their primary as `replication`,
# Sentinels to the data nodes and to each other as `sentinel`.
DEPLOYMENT_PASSWORD_KEYS = {
    "replication": "REDIS_REPLICATION_PASSWORD",
    "sentinel": "REDIS_SENTINEL_PASSWORD",
}
ALL_PASSWORD_KEYS = PASSWORD_KEYS | DEPLOYMENT_PASSWORD_KEYS
# The users of every deployment; `password_roles` adds the others where they exist.
STANDALONE_ROLES = tuple(PASSWORD_KEYS)
# Secrets redkeep generates besides the ACL passwords.
GENERATED_SECRETS = ("GRAFANA_ADMIN_PASSWORD",)
# Secrets only the operator can provide: notification channels (shown in .env.example).
OPERATOR_SECRETS = (
    "SLACK_WEBHOOK_URL",
    "TELEGRAM_BOT_TOKEN",
    "TELEGRAM_CHAT_ID",
    "BACKUP_WEBHOOK_URL",
)
ENV_HEADER = (
    '# Secrets of the redkeep bundle "{name}". Keep this file private (mode 0600); never '
    "commit it.\n"
    "# Change a password with `redkeep users rotate USER` (no downtime), not by editing here.\n"
    "# REDIS_PASSWORD and REDIS_URL are for applications: the app user over TLS."
)
# Added below ENV_HEADER for a deployment (a standalone .env stays as it was).
TOPOLOGY_NOTES = {
    "sentinel": (
        "\n# REDIS_URL is the proxy, which follows the primary the Sentinels name (a failover"
        "\n# moves it). Sentinel-aware clients: REDIS_SENTINELS (HOST:PORT,...) and"
        "\n# REDIS_SENTINEL_MASTER_NAME, logging in to the Sentinels as app with"
        "\n# REDIS_APP_PASSWORD (REDIS_SENTINEL_PASSWORD is the Sentinels' own user)."
    ),
    "cluster": (
        "\n# REDIS_URL names one node, redis-0, as a seed: cluster clients learn the others"
        "\n# from it and follow MOVED/ASK; a client that is not cluster-aware gets MOVED errors."
    ),
}
EXAMPLE_HEADER = (
    "# WARNING: an example only. Never put real secrets here, and never commit a real .env.\n"
    "# `redkeep init` writes .env with random 256-bit passwords, readable by its owner only.\n"
    "# Applications also need the CA and a client certificate: tls/ca.crt, tls/client.crt,\n"
    "# tls/client.key. Optional, to be notified (backups fail, alerts fire), add to .env:\n"
    + "".join(f"#   {key}=\n" for key in OPERATOR_SECRETS)
    + "# then re-render with `redkeep init DIR --force`."
)


def password_roles(topology: str) -> tuple[str, ...]:
    """The ACL users (and .env passwords) a deployment of this topology has: only replicas
    need `replication`, only Sentinels `sentinel`."""
    extra = {"standalone": (), "sentinel": ("replication", "sentinel"), "cluster": ("replication",)}
    return STANDALONE_ROLES + extra[topology]


def app_url(settings: "Settings", password: str) -> str:
    """The URL applications use: the app user over TLS to the bundle's host, at the port that
    serves the whole deployment: Redis' own (standalone), the proxy's, which follows the
    primary the Sentinels name (sentinel, unless the proxy is off: then the initial primary),
    a seed node (cluster: cluster clients learn the others and follow MOVED)."""
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    port = settings.redis.tls_port
    if settings.deployment.topology == "sentinel" and settings.proxy.enabled:
        port = parse_host_port(settings.proxy.listen, "proxy.listen")[1]
    return f"rediss://app:{password}@{host}:{port}"


def sentinel_values(settings: "Settings") -> dict[str, str]:
    """What a Sentinel-aware client needs besides the app user: the Sentinels' addresses
    (HOST:PORT, comma-separated) and the name they know the primary by."""
    from redkeep.config.deployment import plan_nodes  # noqa: PLC0415 - with the settings

    if settings.deployment.topology != "sentinel":
        return {}
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    planned = plan_nodes(settings.deployment, settings.redis.tls_port)
    sentinels = [f"{host}:{node.port}" for node in planned if node.role == "sentinel"]
    return {
        "REDIS_SENTINELS": ",".join(sentinels),
        "REDIS_SENTINEL_MASTER_NAME": settings.deployment.master_name,
    }


def env_header(settings: "Settings") -> str:
    """The header of `.env`: what its keys are for (what REDIS_URL reaches, per topology)."""
    header = ENV_HEADER.format(name=settings.name)
    return header + TOPOLOGY_NOTES.get(settings.deployment.topology, "")


def env_values(settings: "Settings", passwords: dict[str, str]) -> dict[str, str]:
    """The KEY=value pairs of `.env` for these passwords."""
    roles = password_roles(settings.deployment.topology)
    values = {ALL_PASSWORD_KEYS[role]: passwords[role] for role in roles}
    values["REDIS_PASSWORD"] = passwords["app"]
    values["REDIS_URL"] = app_url(settings, passwords["app"])
    return values | sentinel_values(settings)


def example_values(settings: "Settings") -> dict[str, str]:
    """The same keys as `.env`, with no secret in them."""
    roles = password_roles(settings.deployment.topology)
    values = dict.fromkeys((ALL_PASSWORD_KEYS[role] for role in roles), "")
    values["REDIS_PASSWORD"] = ""
    values["REDIS_URL"] = app_url(settings, "<REDIS_APP_PASSWORD>")
    values |= sentinel_values(settings)
    return values | dict.fromkeys(GENERATED_SECRETS, "")
