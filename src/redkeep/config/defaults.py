"""Backup settings outside a bundle: the schema's defaults, as plain objects.

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
    metrics_file: str | None = None
    notify: StandaloneNotify = field(default_factory=StandaloneNotify)
    s3: StandaloneS3 = field(default_factory=StandaloneS3)
