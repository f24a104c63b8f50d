"""The one schema of `redkeep.yaml` (pydantic v2).

It validates the file (every error with its path), generates `redkeep config sample` from the
field descriptions, and renders `redkeep config show`. Hardened defaults live here, as data.
Every section forbids unknown keys, so a typo is an error, not a silently ignored setting.
"""

import ipaddress
import re
import socket
from typing import Annotated, Literal

import pyrage
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from redkeep.config import defaults
from redkeep.errors import UsageError
from redkeep.redis.target import parse_host_port

MEMORY_SIZE = re.compile(r"\d+(b|k|kb|m|mb|g|gb)?", re.IGNORECASE)
# Redis' units (memtoull): k, m, g are powers of 1000; kb, mb, gb powers of 1024.
MEMORY_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2,
                "g": 1000**3, "gb": 1024**3}  # fmt: skip
MIB = 1024**2
KEY_PATTERN = re.compile(r"(~|%R~|%W~|%RW~)\S*|allkeys|resetkeys")
CHANNEL_PATTERN = re.compile(r"&\S*|allchannels|resetchannels")
COMMAND_RULE = re.compile(r"[+-](@?[a-z0-9_.|-]+)|allcommands|nocommands", re.IGNORECASE)


def _yes_no(value: object) -> object:
    # YAML 1.1 reads a bare yes/no as a boolean.
    if isinstance(value, bool):
        return "yes" if value else "no"
    return value


YesOptionalNo = Annotated[Literal["yes", "optional", "no"], BeforeValidator(_yes_no)]


def _number_as_text(value: object) -> object:
    # A bare 0 or 1048576 (in YAML or a REDKEEP_* variable) is a number: a size all the same.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


Size = Annotated[str, BeforeValidator(_number_as_text)]


def _host_port(value: str) -> str:
    try:
        parse_host_port(value)
    except UsageError as error:
        raise ValueError(error.message) from None
    return value


HostPort = Annotated[str, AfterValidator(_host_port)]


def default_server_names() -> list[str]:
    """Names a client may use: loopback, `redis` (the compose service), the machine's hostname."""
    names = ["localhost", "127.0.0.1", "::1", "redis"]
    hostname = socket.gethostname()
    if hostname and hostname not in names:
        names.append(hostname)
    return names


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="after")
    @classmethod
    def _one_line(cls, value: object) -> object:
        # Values end up in redis.conf and docker-compose.yml: a line break would inject lines.
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str) and any(char in text for char in "\r\n\0"):
                raise ValueError("must be one line (no line breaks or NUL)")
        return value


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


class RetentionSettings(Section):
    keep_last: int | None = Field(10, ge=1, description="Keep the newest N backups.")
    keep_daily: int | None = Field(7, ge=1, description="Keep the newest backup of each of N days.")
    keep_weekly: int | None = Field(
        4, ge=1, description="Keep the newest backup of each of N weeks."
    )
    keep_monthly: int | None = Field(
        6, ge=1, description="Keep the newest backup of each of N months."
    )
    max_age_days: int | None = Field(
        None, ge=1, description="Also keep every backup younger than this many days."
    )
    prune_after_run: bool = Field(
        True, description="Apply this retention after every successful `backup run`."
    )


class NotifySettings(Section):
    on_success: bool = Field(
        False,
        description="Notify on success too (failures always notify). Channels are enabled by "
        "secrets in the environment or .env: SLACK_WEBHOOK_URL, TELEGRAM_BOT_TOKEN + "
        "TELEGRAM_CHAT_ID, BACKUP_WEBHOOK_URL.",
    )
    telegram_api_url: str = Field(defaults.TELEGRAM_API, description="Telegram Bot API base URL.")


class S3Settings(Section):
    sse: Literal["AES256", "aws:kms"] | None = Field(
        None, description="Server-side encryption (on top of age)."
    )
    kms_key_id: str | None = Field(None, description="KMS key for sse: aws:kms.")
    storage_class: str | None = Field(None, description="e.g. STANDARD_IA, GLACIER_IR.")
    checksums: Literal["when_required", "when_supported"] = Field(
        defaults.S3_CHECKSUMS,
        description="boto3 request checksums; when_required works with MinIO, R2 and others.",
    )


class BackupSettings(Section):
    dest: str = Field(
        "backups",
        description="Where backups go: a directory (relative to the bundle), file:///path or "
        "s3://bucket/prefix (endpoint from AWS_ENDPOINT_URL).",
    )
    type: Literal["rdb", "aof", "both"] = Field(
        defaults.BACKUP_TYPE, description="What to capture."
    )
    compress: Literal["zstd", "gzip", "none"] = Field(
        defaults.COMPRESSION, description="Compression."
    )
    age_recipients: list[str] = Field(
        default_factory=list,
        description="age public keys (age1...) backups are encrypted to; encryption is on "
        "when there is one. The backup host needs no private key.",
    )
    identity_file: str | None = Field(
        None, description="age identity file used by `backup verify` and `restore`."
    )
    passphrase_file: str | None = Field(
        None, description="File holding a passphrase to encrypt with (instead of or with keys)."
    )
    idle_timeout: float = Field(
        defaults.IDLE_TIMEOUT,
        gt=0,
        description="Give up when the server sends nothing for this many seconds.",
    )
    server_binary: str | None = Field(
        None,
        description="redis-server or valkey-server that `backup verify` and `restore --to-url` "
        "load backups into (relative to the bundle); it must read the backups' RDB version. "
        "Default: redis-server on PATH.",
    )
    interval_minutes: int = Field(
        0, ge=0, description="`redkeep up` runs a backup every N minutes (0: never)."
    )
    metrics_file: str = Field(
        "run/metrics/redkeep_backup.prom",
        description="Prometheus textfile with the last run's result (relative to the bundle).",
    )
    retention: RetentionSettings = Field(
        default_factory=RetentionSettings, description="Which backups `backup prune` keeps."
    )
    notify: NotifySettings = Field(default_factory=NotifySettings, description="Notifications.")
    s3: S3Settings = Field(default_factory=S3Settings, description="S3 upload options.")

    @field_validator("age_recipients")
    @classmethod
    def _recipients(cls, value: list[str]) -> list[str]:
        # Parsed as encryption parses them: a key it cannot read would fail every backup.
        for key in value:
            try:
                if key.startswith("age1"):
                    pyrage.x25519.Recipient.from_str(key)
                    continue
                if key.startswith(("ssh-ed25519 ", "ssh-rsa ")):
                    pyrage.ssh.Recipient.from_str(key)
                    continue
            except pyrage.RecipientError:
                pass
            raise ValueError(
                f"'{key[:16]}...' is not an age public key (age1..., as `age-keygen -y KEYFILE` "
                "prints it) nor an ssh-ed25519/ssh-rsa public key"
            )
        return value


CHECK_TYPES = (
    "key_age",
    "hash_counters",
    "key_count",
    "ttl",
    "exists",
    "stream_length",
    "list_length",
    "lua",
)
# What each check type needs besides its name.
CHECK_NEEDS = {
    "key_age": ("key",),
    "hash_counters": ("key", "fields"),
    "key_count": ("pattern",),
    "ttl": ("key",),
    "exists": ("key",),
    "stream_length": ("key",),
    "list_length": ("key",),
    "lua": ("script",),
}


class CheckSettings(Section):
    name: str = Field(
        pattern=r"^[a-z][a-z0-9_]*$", description="Name of the check (the `check` label)."
    )
    type: Literal[CHECK_TYPES] = Field(description="What to measure.")  # type: ignore[valid-type]
    key: str | None = Field(None, description="The key to look at.")
    field: str | None = Field(
        None, description="key_age: the hash field holding the timestamp (else the key's value)."
    )
    unit: Literal["s", "ms", "us"] = Field("s", description="key_age: unit of the timestamp.")
    fields: list[str] = Field(default_factory=list, description="hash_counters: the fields.")
    pattern: str | None = Field(None, description="key_count: a SCAN MATCH pattern.")
    db: int = Field(0, ge=0, description="Database number.")
    script: str | None = Field(None, description="lua: a read-only script (run with EVAL_RO).")
    keys: list[str] = Field(default_factory=list, description="lua: the script's KEYS.")
    interval_seconds: float = Field(15.0, gt=0, description="Seconds between evaluations.")

    @model_validator(mode="after")
    def _has_what_its_type_needs(self) -> "CheckSettings":
        missing = [need for need in CHECK_NEEDS[self.type] if not getattr(self, need)]
        if missing:
            raise ValueError(f"a {self.type} check needs {', '.join(missing)}")
        return self


class ScrapeTargetSettings(Section):
    url: str = Field(description="A Redis URL `/scrape?target=` may name (no password here).")
    profile: str = Field(description="The credential profile used for it.")


class ProfileSettings(Section):
    username: str | None = Field(None, description="ACL user.")
    password_env: str | None = Field(
        None, description="Environment variable (or .env key) holding the password."
    )
    tls_ca: str | None = Field(None, description="CA certificate for rediss:// targets.")
    tls_cert: str | None = Field(None, description="Client certificate.")
    tls_key: str | None = Field(None, description="Client key.")


class ExporterSettings(Section):
    listen: HostPort = Field(
        defaults.EXPORTER_LISTEN,
        description="HOST:PORT the exporter listens on (localhost by default).",
    )
    checks: list[CheckSettings] = Field(
        default_factory=list, description="Application checks, evaluated off the scrape path."
    )
    checks_url: str | None = Field(
        None, description="Run the checks against this server (e.g. a replica) instead."
    )
    checks_budget_seconds: float = Field(
        2.0, gt=0, description="Longest a round of checks may take before it yields."
    )
    checks_max_commands: int = Field(
        200, ge=1, description="Most commands a round of checks may send (the ops budget)."
    )
    checks_scan_count: int = Field(1000, ge=1, description="SCAN COUNT for key_count checks.")
    posture_interval_seconds: float = Field(
        defaults.EXPORTER_POSTURE_INTERVAL,
        gt=0,
        description="Seconds between the TLS and authentication probes.",
    )
    http_header_timeout_seconds: float = Field(
        defaults.EXPORTER_HEADER_TIMEOUT,
        gt=0,
        le=300,
        description="Seconds a client has for its TLS handshake and each request's headers; "
        "a slower one is closed.",
    )
    http_idle_timeout_seconds: float = Field(
        defaults.EXPORTER_IDLE_TIMEOUT,
        gt=0,
        le=3600,
        description="Seconds a kept-alive connection may wait for its next request.",
    )
    http_write_timeout_seconds: float = Field(
        defaults.EXPORTER_WRITE_TIMEOUT,
        gt=0,
        le=300,
        description="Seconds an answer may take to leave; a client that does not read it is "
        "closed.",
    )
    http_max_connections: int = Field(
        defaults.EXPORTER_MAX_CONNECTIONS,
        ge=1,
        le=10000,
        description="Most open HTTP connections: at the cap one that is not being answered "
        "(stuck writing, idle, or queued) is closed, or, when all are, a newcomer gets 503.",
    )
    http_max_connections_per_address: int = Field(
        defaults.EXPORTER_MAX_CONNECTIONS_PER_ADDRESS,
        ge=1,
        le=10000,
        description="Most open HTTP connections from one client address; beyond, its own "
        "connections make room, so one address cannot take all.",
    )
    tls_cert_file: str | None = Field(None, description="Serve HTTPS with this certificate.")
    tls_key_file: str | None = Field(None, description="And this key.")
    basic_auth_user: str | None = Field(
        None,
        description="Require HTTP basic auth as this user; the password comes from "
        "EXPORTER_BASIC_AUTH_PASSWORD (environment or .env).",
    )
    targets: list[ScrapeTargetSettings] = Field(
        default_factory=list, description="The only targets `/scrape?target=` accepts."
    )
    profiles: dict[str, ProfileSettings] = Field(
        default_factory=dict, description="Credential profiles for those targets."
    )

    @model_validator(mode="after")
    def _profiles_exist(self) -> "ExporterSettings":
        for target in self.targets:
            if target.profile not in self.profiles:
                raise ValueError(
                    f"target {target.url} names profile '{target.profile}', which is not defined"
                )
        names = [check.name for check in self.checks]
        if len(names) != len(set(names)):
            raise ValueError("check names must be unique")
        return self


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
