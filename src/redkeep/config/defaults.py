"""Backup and exporter settings outside a bundle: the schema's defaults, as plain objects.

`redkeep backup run --url ... --dest ...` needs no redkeep.yaml, and loading pydantic would
cost it a fifth of a second; the schema takes its defaults from here, and a unit test checks
that the two agree.
"""

from dataclasses import dataclass, field

BACKUP_TYPE = "rdb"
COMPRESSION = "zstd"
IDLE_TIMEOUT = 60.0
TELEGRAM_API = "https://api.telegram.org"
S3_CHECKSUMS = "when_required"


@dataclass(frozen=True)
class StandaloneNotify:
    on_success: bool = False
    telegram_api_url: str = TELEGRAM_API


@dataclass(frozen=True)
class StandaloneS3:
    sse: str | None = None
    kms_key_id: str | None = None
    storage_class: str | None = None
    checksums: str = S3_CHECKSUMS


@dataclass(frozen=True)
class StandaloneBackup:
    """What `BackupSettings` provides, for runs without a bundle (no metrics file, no retention)."""

    dest: str | None = None
    type: str = BACKUP_TYPE
    compress: str = COMPRESSION
    age_recipients: list[str] = field(default_factory=list)
    identity_file: str | None = None
    passphrase_file: str | None = None
    idle_timeout: float = IDLE_TIMEOUT
    server_binary: str | None = None
    metrics_file: str | None = None
    notify: StandaloneNotify = field(default_factory=StandaloneNotify)
    s3: StandaloneS3 = field(default_factory=StandaloneS3)


# The exporter's settings outside a bundle (`redkeep exporter --url ...`): the schema takes its
# defaults from here too, and a unit test checks that the two agree. Without a bundle the
# exporter then never loads pydantic, which would double its resident memory.
EXPORTER_LISTEN = "127.0.0.1:9121"
EXPORTER_HEADER_TIMEOUT = 10.0
EXPORTER_IDLE_TIMEOUT = 120.0  # longer than Prometheus's default 1m interval: its socket is kept
EXPORTER_WRITE_TIMEOUT = 10.0
EXPORTER_MAX_CONNECTIONS = 64
EXPORTER_MAX_CONNECTIONS_PER_ADDRESS = 16
EXPORTER_POSTURE_INTERVAL = 60.0


@dataclass(frozen=True)
class StandaloneExporter:
    """What `ExporterSettings` provides, for an exporter without a bundle (no checks)."""

    listen: str = EXPORTER_LISTEN
    checks: list = field(default_factory=list)
    checks_url: str | None = None
    checks_budget_seconds: float = 2.0
    checks_max_commands: int = 200
    checks_scan_count: int = 1000
    posture_interval_seconds: float = EXPORTER_POSTURE_INTERVAL
    http_header_timeout_seconds: float = EXPORTER_HEADER_TIMEOUT
    http_idle_timeout_seconds: float = EXPORTER_IDLE_TIMEOUT
    http_write_timeout_seconds: float = EXPORTER_WRITE_TIMEOUT
    http_max_connections: int = EXPORTER_MAX_CONNECTIONS
    http_max_connections_per_address: int = EXPORTER_MAX_CONNECTIONS_PER_ADDRESS
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    basic_auth_user: str | None = None
    targets: list = field(default_factory=list)
    profiles: dict = field(default_factory=dict)
