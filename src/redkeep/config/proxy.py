"""The `proxy:` section of redkeep.yaml (`proxy/config.py` makes the proxy's configuration of
it and the command-line flags)."""

import ipaddress
import re

from pydantic import Field, field_validator

from redkeep.config.section import HostPort, Section, YesOptionalNo

# What an application never needs and an attacker wants: wiping or scanning the data, changing
# the server, replication (REPLICAOF to a server of the attacker's makes Redis run whatever it
# streams, FLUSHALL and CONFIG SET included), persistence, moving data away, watching other
# clients, changing users, killing or pausing other clients.
DEFAULT_DENIED_COMMANDS = [
    "FLUSHALL",
    "FLUSHDB",
    "SWAPDB",
    "KEYS",
    "CONFIG",
    "DEBUG",
    "MODULE",
    "SHUTDOWN",
    "REPLICAOF",
    "SLAVEOF",
    "SYNC",
    "PSYNC",
    "FAILOVER",
    "MIGRATE",
    "SAVE",
    "BGSAVE",
    "BGREWRITEAOF",
    "MONITOR",
    "SCRIPT KILL",
    "ACL SETUSER",
    "ACL DELUSER",
    "ACL LOAD",
    "ACL SAVE",
    "CLIENT KILL",
    "CLIENT PAUSE",
]


class ProxySettings(Section):
    enabled: bool = Field(True, description="`redkeep up` starts the proxy in front of Redis.")
    listen: HostPort = Field("127.0.0.1:6381", description="HOST:PORT clients connect to.")
    upstream: HostPort | None = Field(
        None,
        description="HOST:PORT of Redis (default: this bundle's redis-server on its TLS port).",
    )
    sentinels: list[HostPort] = Field(
        default_factory=list,
        description="Sentinels (HOST:PORT) to ask for the primary instead of a fixed upstream "
        "(default in a sentinel bundle: its own Sentinels).",
    )
    master_name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="The name the Sentinels know the primary by (default: deployment.master_name).",
    )
    sentinel_user: str = Field(
        "app",
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="ACL user for the Sentinels and the primary's role check (its password: the "
        "bundle's .env, or REDKEEP_SENTINEL_PASSWORD).",
    )
    allow: list[str] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"],
        description="Client networks (CIDR) let in; everyone else is refused before TLS.",
    )
    deny: list[str] = Field(
        default_factory=list, description="Client networks refused even when allowed."
    )
    max_conns: int = Field(10000, ge=1, description="Most client connections at once.")
    max_conns_per_ip: int = Field(1000, ge=1, description="Most connections from one address.")
    conn_rate: float | None = Field(
        100.0, gt=0, description="New connections per second per address (null: no limit)."
    )
    cmd_rate: float | None = Field(
        None,
        gt=0,
        description="Commands per second per connection; more get '-ERR rate limit' "
        "(null: no limit).",
    )
    deny_commands: list[str] = Field(
        default_factory=lambda: list(DEFAULT_DENIED_COMMANDS),
        description="Commands (or 'COMMAND SUBCOMMAND') refused with an error, also in "
        "MULTI and inline; ACL stays the authority, this is a second line.",
    )
    unauthenticated_limits: bool = Field(
        True,
        description="Before AUTH, allow at most 10 arguments of 16 KiB, as Redis does when "
        "the default user needs a password (false for a nopass default user).",
    )
    client_idle_timeout: float = Field(
        0,
        ge=0,
        description="Close a client that sent nothing for this many seconds (0: never; "
        "Redis' own timeout already closes idle clients but spares pub/sub and blocked ones).",
    )
    upstream_idle_timeout: float = Field(
        0,
        ge=0,
        description="Close a connection when Redis has not answered a request for this many "
        "seconds (0: never; set it above the longest blocking command).",
    )
    connect_timeout: float = Field(3.0, gt=0, description="Seconds to connect to Redis.")
    handshake_timeout: float = Field(10.0, gt=0, description="Seconds for a client TLS handshake.")
    tls: bool = Field(True, description="Terminate TLS for clients (the bundle's certificate).")
    tls_cert: str | None = Field(None, description="Server certificate (default tls/server.crt).")
    tls_key: str | None = Field(None, description="Its key (default tls/server.key).")
    tls_client_ca: str | None = Field(
        None, description="CA for client certificates (default tls/ca.crt)."
    )
    auth_clients: YesOptionalNo = Field(
        "yes", description="Client certificates at the proxy: required, checked if sent, or not."
    )
    upstream_tls_ca: str | None = Field(
        None, description="CA to verify Redis (default tls/ca.crt)."
    )
    upstream_tls_cert: str | None = Field(
        None, description="Client certificate towards Redis (default tls/client.crt)."
    )
    upstream_tls_key: str | None = Field(None, description="Its key (default tls/client.key).")
    upstream_tls_name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9.:-]+$",
        description="Name to verify in Redis' certificate (default: the upstream host, or "
        "`host` in a bundle).",
    )
    access_log: str | None = Field(
        "run/proxy-access.log",
        description="JSON access log, one line per connection ('-': standard output; null: off).",
    )
    log_denied_commands: bool = Field(True, description="Also log one line per denied command.")
    metrics_listen: HostPort | None = Field(
        "127.0.0.1:9122", description="HOST:PORT of /metrics (null: off)."
    )

    @field_validator("allow", "deny")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"'{network}' is not a network (e.g. 10.0.0.0/8)") from None
        return value

    @field_validator("deny_commands")
    @classmethod
    def _commands(cls, value: list[str]) -> list[str]:
        for command in value:
            if not re.fullmatch(r"[A-Za-z][\w.-]{0,63}([ |][A-Za-z][\w.-]{0,63})?", command):
                raise ValueError(
                    f"'{command}' is not 'COMMAND' or 'COMMAND SUBCOMMAND' (names of at most "
                    "64 characters)"
                )
        return value
