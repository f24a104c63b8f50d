"""The backup and exporter sections of redkeep.yaml, declared once, as plain dataclasses.

`redkeep backup run --url ... --dest ...` and `redkeep exporter --url ...` run without a bundle,
and then with these defaults, without pydantic: loading it and the schema would cost each
command about 0.2 s and the exporter 12 MiB of its 32 MiB budget (docs/benchmarks.md, "Start-up").
Each field is declared here only: type, default, description and bounds (pydantic's `gt`, `ge`,
`le`). The schema builds its pydantic models from these classes (`config/section.py:section`)
and adds what needs pydantic: nested models, HOST:PORT checks, validators.
"""

from dataclasses import MISSING, dataclass, field
from typing import Any, Literal


def setting(default: Any = MISSING, description: str = "", *, factory: Any = MISSING, **bounds):
    """A field: its default (or a `factory` that makes one), the description `config sample`
    prints above it, and the bounds the schema checks."""
    return field(
        default=default, default_factory=factory, metadata={"description": description, **bounds}
    )


@dataclass(frozen=True)
class RetentionDefaults:
    keep_last: int | None = setting(10, "Keep the newest N backups.", ge=1)
    keep_daily: int | None = setting(7, "Keep the newest backup of each of N days.", ge=1)
    keep_weekly: int | None = setting(4, "Keep the newest backup of each of N weeks.", ge=1)
    keep_monthly: int | None = setting(6, "Keep the newest backup of each of N months.", ge=1)
    max_age_days: int | None = setting(
        None, "Also keep every backup younger than this many days.", ge=1
    )
    prune_after_run: bool = setting(
        True, "Apply this retention after every successful `backup run`."
    )


@dataclass(frozen=True)
class NotifyDefaults:
    on_success: bool = setting(
        False,
        "Notify on success too (failures always notify). Channels are enabled by secrets in "
        "the environment or .env: SLACK_WEBHOOK_URL, TELEGRAM_BOT_TOKEN + TELEGRAM_CHAT_ID, "
        "BACKUP_WEBHOOK_URL.",
    )
    telegram_api_url: str = setting("https://api.telegram.org", "Telegram Bot API base URL.")


@dataclass(frozen=True)
class S3Defaults:
    sse: Literal["AES256", "aws:kms"] | None = setting(
        None, "Server-side encryption (on top of age)."
    )
    kms_key_id: str | None = setting(None, "KMS key for sse: aws:kms.")
    storage_class: str | None = setting(None, "e.g. STANDARD_IA, GLACIER_IR.")
    checksums: Literal["when_required", "when_supported"] = setting(
        "when_required",
        "boto3 request checksums; when_required works with MinIO, R2 and others.",
    )


@dataclass(frozen=True)
class BackupDefaults:
    dest: str = setting(
        "backups",
        "Where backups go: a directory (relative to the bundle), file:///path or "
        "s3://bucket/prefix (endpoint from AWS_ENDPOINT_URL).",
    )
    type: Literal["rdb", "aof", "both"] = setting("rdb", "What to capture.")
    compress: Literal["zstd", "gzip", "none"] = setting("zstd", "Compression.")
    age_recipients: list[str] = setting(
        factory=list,
        description="age public keys (age1...) backups are encrypted to; encryption is on "
        "when there is one. The backup host needs no private key.",
    )
    identity_file: str | None = setting(
        None, "age identity file used by `backup verify` and `restore`."
    )
    passphrase_file: str | None = setting(
        None, "File holding a passphrase to encrypt with (instead of or with keys)."
    )
    idle_timeout: float = setting(
        60.0, "Give up when the server sends nothing for this many seconds.", gt=0
    )
    server_binary: str | None = setting(
        None,
        "redis-server or valkey-server that `backup verify` and `restore --to-url` load backups "
        "into (relative to the bundle); it must read the backups' RDB version. Default: "
        "redis-server on PATH.",
    )
    interval_minutes: int = setting(
        0, "`redkeep up` runs a backup every N minutes (0: never).", ge=0
    )
    max_replica_gap_bytes: int = setting(
        1 << 20,
        "Sentinel and cluster deployments: a replica more bytes than this of its primary's "
        "replication stream behind is not in sync, and is not captured from (0: only one "
        "that has everything the primary wrote).",
        ge=0,
    )
    metrics_file: str = setting(
        "run/metrics/redkeep_backup.prom",
        "Prometheus textfile with the last run's result (relative to the bundle).",
    )
    retention: RetentionDefaults = setting(
        factory=RetentionDefaults, description="Which backups `backup prune` keeps."
    )
    notify: NotifyDefaults = setting(factory=NotifyDefaults, description="Notifications.")
    s3: S3Defaults = setting(factory=S3Defaults, description="S3 upload options.")


@dataclass(frozen=True)
class StandaloneBackup(BackupDefaults):
    """The backup settings of a run without a bundle: no default destination (--dest says
    it) and no metrics file (--metrics-file); in a bundle both are paths inside it."""

    dest: str | None = None
    metrics_file: str | None = None


@dataclass(frozen=True)
class ExporterDefaults:
    listen: str = setting(
        "127.0.0.1:9121", "HOST:PORT the exporter listens on (localhost by default)."
    )
    checks: list = setting(
        factory=list, description="Application checks, evaluated off the scrape path."
    )
    checks_url: str | None = setting(
        None, "Run the checks against this server (e.g. a replica) instead."
    )
    checks_budget_seconds: float = setting(
        2.0, "Longest a round of checks may take before it yields.", gt=0
    )
    checks_max_commands: int = setting(
        200, "Most commands a round of checks may send (the ops budget).", ge=1
    )
    checks_scan_count: int = setting(1000, "SCAN COUNT for key_count checks.", ge=1)
    posture_interval_seconds: float = setting(
        60.0, "Seconds between the TLS and authentication probes.", gt=0
    )
    http_header_timeout_seconds: float = setting(
        10.0,
        "Seconds a client has for its TLS handshake and each request's headers; a slower one "
        "is closed.",
        gt=0,
        le=300,
    )
    # Longer than Prometheus's default 1m scrape interval: its connection is kept.
    http_idle_timeout_seconds: float = setting(
        120.0, "Seconds a kept-alive connection may wait for its next request.", gt=0, le=3600
    )
    http_write_timeout_seconds: float = setting(
        10.0,
        "Seconds an answer may take to leave; a client that does not read it is closed.",
        gt=0,
        le=300,
    )
    http_max_connections: int = setting(
        64,
        "Most open HTTP connections: at the cap one that is not being answered (stuck "
        "writing, idle, or queued) is closed, or, when all are, a newcomer gets 503.",
        ge=1,
        le=10000,
    )
    http_max_connections_per_address: int = setting(
        16,
        "Most open HTTP connections from one client address; beyond, its own connections "
        "make room, so one address cannot take all.",
        ge=1,
        le=10000,
    )
    tls_cert_file: str | None = setting(None, "Serve HTTPS with this certificate.")
    tls_key_file: str | None = setting(None, "And this key.")
    basic_auth_user: str | None = setting(
        None,
        "Require HTTP basic auth as this user; the password comes from "
        "EXPORTER_BASIC_AUTH_PASSWORD (environment or .env).",
    )
    targets: list = setting(factory=list, description="The only targets `/scrape?target=` accepts.")
    profiles: dict = setting(factory=dict, description="Credential profiles for those targets.")


# Without a bundle the exporter runs with the section's defaults as they are.
StandaloneExporter = ExporterDefaults
