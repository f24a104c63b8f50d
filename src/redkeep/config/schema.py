"""The one schema of `redkeep.yaml` (pydantic v2).

It validates the file (every error with its path), generates `redkeep config sample` from the
field descriptions, and renders `redkeep config show`. Hardened defaults live here (and in
`config/defaults.py`), as data.
Every section forbids unknown keys, so a typo is an error, not a silently ignored setting.

The Redis server, TLS, users, docker and monitoring sections are here; the backup, exporter and
proxy sections have a module each (their fields are declared in `config/defaults.py` for the
backup and the exporter, which also run without a bundle), imported here for everyone.
"""

import ipaddress
import re
import socket
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from redkeep.config.backup import BackupSettings, NotifySettings, RetentionSettings, S3Settings
from redkeep.config.deployment import DeploymentSettings
from redkeep.config.exporter import (
    CHECK_NEEDS,
    CHECK_TYPES,
    CheckSettings,
    ExporterSettings,
    ProfileSettings,
    ScrapeTargetSettings,
)
from redkeep.config.proxy import DEFAULT_DENIED_COMMANDS, ProxySettings
from redkeep.config.section import HostPort, Section, YesOptionalNo

__all__ = [
    "CHECK_NEEDS",
    "CHECK_TYPES",
    "DEFAULT_DENIED_COMMANDS",
    "AppUserSettings",
    "BackupSettings",
    "CheckSettings",
    "DeploymentSettings",
    "DockerSettings",
    "ExporterSettings",
    "HostPort",
    "MonitoringSettings",
    "NotifySettings",
    "ProfileSettings",
    "ProxySettings",
    "RedisSettings",
    "RetentionSettings",
    "S3Settings",
    "ScrapeTargetSettings",
    "Section",
    "Settings",
    "TLSSettings",
    "UsersSettings",
    "YesOptionalNo",
    "memory_bytes",
]

MEMORY_SIZE = re.compile(r"\d+(b|k|kb|m|mb|g|gb)?", re.IGNORECASE)
# Redis' units (memtoull): k, m, g are powers of 1000; kb, mb, gb powers of 1024.
MEMORY_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2,
                "g": 1000**3, "gb": 1024**3}  # fmt: skip
MIB = 1024**2
KEY_PATTERN = re.compile(r"(~|%R~|%W~|%RW~)\S*|allkeys|resetkeys")
CHANNEL_PATTERN = re.compile(r"&\S*|allchannels|resetchannels")
COMMAND_RULE = re.compile(r"[+-](@?[a-z0-9_.|-]+)|allcommands|nocommands", re.IGNORECASE)


def _number_as_text(value: object) -> object:
    # A bare 0 or 1048576 (in YAML or a REDKEEP_* variable) is a number: a size all the same.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


Size = Annotated[str, BeforeValidator(_number_as_text)]


def default_server_names() -> list[str]:
    """Names a client may use: loopback, `redis` (the compose service), the machine's hostname."""
    names = ["localhost", "127.0.0.1", "::1", "redis"]
    hostname = socket.gethostname()
    if hostname and hostname not in names:
        names.append(hostname)
    return names


class RedisSettings(Section):
    image: str = Field(
        "redis:7", pattern=r"^[\w./:@-]+$", description="Container image for docker-compose.yml."
    )
    bind: list[str] = Field(
        default_factory=lambda: ["127.0.0.1", "-::1"],
        description="Addresses redis-server listens on when run by `redkeep up` "
        "(a leading '-' means: skip if the address is not available).",
    )
    tls_port: int = Field(6380, ge=1, le=65535, description="The TLS port, the only listener.")
    maxmemory: Size = Field(
        "256mb", description="Memory limit for data (e.g. 256mb, 2gb); 0 means no limit."
    )
    maxmemory_policy: Literal[
        "allkeys-lru",
        "allkeys-lfu",
        "allkeys-random",
        "volatile-lru",
        "volatile-lfu",
        "volatile-random",
        "volatile-ttl",
        "noeviction",
    ] = Field("allkeys-lru", description="What Redis evicts when maxmemory is reached.")
    maxmemory_clients: Size = Field(
        "auto",
        description="Memory all clients may use together (Redis 7.0+): beyond it the biggest "
        "client is disconnected instead of data evicted. auto: a quarter of maxmemory, at least "
        "64mb, at most half; or a size, a % of maxmemory, 0 for no limit.",
    )
    client_output_buffer_limit_normal: Size = Field(
        "64mb",
        description="Replies one client may leave unread (e.g. 64mb) before it is disconnected; "
        "0 means no limit.",
    )
    maxclients: int = Field(10000, ge=1, description="Most client connections at once.")
    timeout: int = Field(300, ge=0, description="Close a client idle this many seconds (0: never).")
    tcp_keepalive: int = Field(300, ge=0, description="Seconds between TCP keepalive probes.")
    acllog_max_len: int = Field(
        256, ge=1, description="Entries kept in ACL LOG (denied commands, failed logins)."
    )
    appendonly: bool = Field(True, description="Append-only file persistence, next to RDB.")
    save: list[str] = Field(
        default_factory=lambda: ["3600 1", "300 100", "60 10000"],
        description="RDB snapshot points: 'SECONDS CHANGES' (save after SECONDS if CHANGES).",
    )
    repl_diskless_sync_delay: int = Field(
        5, ge=0, description="Seconds a snapshot for replicas (and backups) waits for more."
    )
    latency_monitor_threshold: int = Field(
        100, ge=0, description="Record events slower than this many ms in LATENCY (0: off)."
    )

    @field_validator("maxmemory", "client_output_buffer_limit_normal")
    @classmethod
    def _memory_size(cls, value: str) -> str:
        if not MEMORY_SIZE.fullmatch(value):
            raise ValueError("expected a size such as 256mb, 2gb or 0")
        return value.lower()

    @field_validator("maxmemory_clients")
    @classmethod
    def _clients_memory(cls, value: str) -> str:
        percent = value.endswith("%") and value[:-1].isdigit() and int(value[:-1]) <= 100
        if not (percent or value.lower() == "auto" or MEMORY_SIZE.fullmatch(value)):
            raise ValueError(
                "expected a size such as 64mb, a percentage of maxmemory (25%), auto or 0"
            )
        return value.lower()

    def maxmemory_bytes(self) -> int:
        return memory_bytes(self.maxmemory)

    def clients_memory_bytes(self) -> int:
        """maxmemory-clients in bytes (0: no limit). auto leaves a quarter of maxmemory to
        client buffers, at least 64 MiB (a SET then GET of a 28 MiB value on one connection
        needs about twice the value) and at most half, so data keeps the larger part."""
        value, maxmemory = self.maxmemory_clients, self.maxmemory_bytes()
        if value == "auto":
            reserve = max(maxmemory // 4, 64 * MIB)
            return min(reserve, maxmemory // 2) if maxmemory else reserve
        if value.endswith("%"):
            return maxmemory * int(value[:-1]) // 100
        return memory_bytes(value)

    def data_budget_bytes(self) -> int:
        """What data may use before client buffers at their limit make Redis evict keys:
        maxmemory minus maxmemory-clients (0: no maxmemory, no budget)."""
        maxmemory = self.maxmemory_bytes()
        return max(0, maxmemory - self.clients_memory_bytes()) if maxmemory else 0

    @field_validator("save")
    @classmethod
    def _save_points(cls, value: list[str]) -> list[str]:
        for point in value:
            parts = point.split()
            if len(parts) != 2 or not all(part.isdigit() for part in parts):
                raise ValueError(f"'{point}' is not 'SECONDS CHANGES' (e.g. '300 100')")
        return value

    @field_validator("bind")
    @classmethod
    def _bind_addresses(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("needs at least one address")
        for address in value:
            try:
                ipaddress.ip_address(address.removeprefix("-"))
            except ValueError:
                raise ValueError(f"'{address}' is not an IP address") from None
        return value


class TLSSettings(Section):
    auth_clients: YesOptionalNo = Field(
        "yes", description="Client certificates: required (yes), checked if sent, or ignored."
    )
    key_type: Literal["ecdsa-p256", "rsa-3072"] = Field(
        "ecdsa-p256", description="Key algorithm for the CA and the certificates."
    )
    server_names: list[str] = Field(
        default_factory=default_server_names,
        description="DNS names and IP addresses in the server certificate (subjectAltName).",
    )
    ca_days: int = Field(3650, ge=1, le=36500, description="CA certificate lifetime in days.")
    cert_days: int = Field(
        365, ge=1, le=3650, description="Server and client certificate lifetime in days."
    )
    protocols: list[Literal["TLSv1.2", "TLSv1.3"]] = Field(
        default_factory=lambda: ["TLSv1.2", "TLSv1.3"],
        description="TLS versions Redis accepts; older ones are not allowed.",
    )
    ciphers: str = Field(
        pattern=r"^[\w:+!@.=-]+$",
        default="ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
        "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
        "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256",
        description="TLSv1.2 cipher list: forward secrecy and AEAD only.",
    )
    ciphersuites: str = Field(
        pattern=r"^[\w:]+$",
        default="TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256",
        description="TLSv1.3 cipher suites.",
    )

    @field_validator("server_names", "protocols")
    @classmethod
    def _not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("needs at least one entry")
        return value


class AppUserSettings(Section):
    keys: list[str] = Field(
        default_factory=lambda: ["~*"],
        description="Key patterns the app user may touch (ACL syntax, e.g. '~session:*').",
    )
    channels: list[str] = Field(
        default_factory=lambda: ["&*"],
        description="Pub/Sub channel patterns the app user may use (ACL syntax, e.g. '&events:*').",
    )
    commands: list[str] = Field(
        default_factory=lambda: [
            "-@all",
            "+@read",
            "+@write",
            "+@keyspace",
            "+@string",
            "+@hash",
            "+@list",
            "+@set",
            "+@sortedset",
            "+@stream",
            "+@bitmap",
            "+@hyperloglog",
            "+@geo",
            "+@pubsub",
            "+@transaction",
            "+@connection",
            "+@scripting",
        ],
        description="ACL command rules for the app user; redkeep always appends "
        "-@dangerous -@admin.",
    )

    @field_validator("keys")
    @classmethod
    def _keys(cls, value: list[str]) -> list[str]:
        return _check_rules(value, KEY_PATTERN, "key pattern such as '~app:*'")

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: list[str]) -> list[str]:
        return _check_rules(value, CHANNEL_PATTERN, "channel pattern such as '&app:*'")

    @field_validator("commands")
    @classmethod
    def _commands(cls, value: list[str]) -> list[str]:
        return _check_rules(value, COMMAND_RULE, "command rule such as '+@read' or '-flushall'")


class UsersSettings(Section):
    app: AppUserSettings = Field(
        default_factory=AppUserSettings, description="The application's user."
    )


class DockerSettings(Section):
    publish_address: str = Field(
        "127.0.0.1",
        description="Host address docker publishes the TLS port on (0.0.0.0: every interface).",
    )


class MonitoringSettings(Section):
    memory_warning_percent: int = Field(
        90, ge=1, le=100, description="Alert above this % of maxmemory."
    )
    connections_warning_percent: int = Field(
        80, ge=1, le=100, description="Alert above this % of maxclients."
    )
    hit_rate_warning_percent: int = Field(
        80, ge=1, le=100, description="Alert when fewer key lookups than this % hit."
    )
    slow_queries_per_5m: int = Field(
        10, ge=0, description="Alert above this many slow-log entries."
    )
    stale_market_data_seconds: int = Field(
        60, ge=1, description="Alert when the market-data timestamp is older."
    )
    backup_max_age_hours: int = Field(
        26, ge=1, description="Alert when the last successful backup is older."
    )
    certificate_warning_days: int = Field(
        14, ge=1, description="Alert when the served certificate expires within this."
    )
    acl_denials_per_5m: int = Field(
        10, ge=0, description="Alert above this many NOPERM/WRONGPASS/NOAUTH errors in 5 minutes."
    )


class Settings(Section):
    version: Literal[1] = Field(1, description="Version of this file's format.")
    name: str = Field(
        "redkeep",
        pattern=r"^[a-z0-9][a-z0-9_-]*$",
        description="Name of this deployment (compose project, certificate names).",
    )
    host: str = Field(
        "localhost",
        description="Host name applications connect to; must be one of tls.server_names.",
    )
    redis: RedisSettings = Field(default_factory=RedisSettings, description="The Redis server.")
    tls: TLSSettings = Field(default_factory=TLSSettings, description="Certificates and TLS.")
    users: UsersSettings = Field(default_factory=UsersSettings, description="ACL users.")
    docker: DockerSettings = Field(
        default_factory=DockerSettings, description="docker-compose.yml."
    )
    backup: BackupSettings = Field(default_factory=BackupSettings, description="Backups.")
    exporter: ExporterSettings = Field(
        default_factory=ExporterSettings, description="The Prometheus exporter."
    )
    monitoring: MonitoringSettings = Field(
        default_factory=MonitoringSettings, description="Alert thresholds."
    )
    proxy: ProxySettings = Field(
        default_factory=ProxySettings, description="The network security proxy."
    )
    deployment: DeploymentSettings = Field(
        default_factory=DeploymentSettings,
        description="How many servers hold the data: standalone, sentinel or cluster.",
    )

    @model_validator(mode="after")
    def _host_is_in_certificate(self) -> "Settings":
        if self.host not in self.tls.server_names:
            raise ValueError(
                f"host '{self.host}' is not in tls.server_names, so TLS hostname checks "
                "would fail; add it there"
            )
        return self


def memory_bytes(size: str) -> int:
    """A redis.conf memory size ('256mb', '1g', '1048576') in bytes, as Redis reads it."""
    number, unit = re.fullmatch(r"(\d+)([a-z]*)", size.lower()).groups()
    return int(number) * MEMORY_UNITS[unit]


def _check_rules(values: list[str], pattern: re.Pattern[str], example: str) -> list[str]:
    for value in values:
        if not pattern.fullmatch(value):
            raise ValueError(f"'{value}' is not a {example}")
    return values
