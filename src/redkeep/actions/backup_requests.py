"""What the user asked `redkeep backup` for: the flags of each command, as typed.

Nothing here is resolved: paths are not read, the bundle is not loaded, the store is not
opened. The actions (backup_commands.py) do that.
"""

from dataclasses import dataclass
from pathlib import Path

from redkeep.redis.target import ConnectionOptions


@dataclass(frozen=True)
class StoreFlags:
    """--dest, --source and --dir: where the backups are, and of which server."""

    dest: str | None = None
    source: str | None = None
    directory: Path | None = None


@dataclass(frozen=True)
class RunRequest:
    where: StoreFlags
    connection: ConnectionOptions
    kind: str | None = None  # --type: rdb, aof or both
    compress: str | None = None
    age_recipient: tuple[str, ...] = ()
    age_recipients_file: tuple[Path, ...] = ()
    passphrase_file: Path | None = None
    no_encrypt: bool = False
    idle_timeout: float | None = None
    metrics_file: Path | None = None
    notify_on_success: bool | None = None
    every: float | None = None  # minutes
    capture_from: str = "replica"  # --from: a cluster's or sentinel group's replica, or primary
    as_json: bool = False


@dataclass(frozen=True)
class ListRequest:
    where: StoreFlags
    as_json: bool = False


@dataclass(frozen=True)
class VerifyRequest:
    where: StoreFlags
    backup_id: str = "latest"
    age_identity: tuple[Path, ...] = ()
    passphrase_file: Path | None = None
    server_binary: Path | None = None
    as_json: bool = False


@dataclass(frozen=True)
class RestoreRequest:
    where: StoreFlags
    backup_id: str
    to_file: Path | None = None
    to_url: str | None = None
    password_file: Path | None = None  # of --to-url
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    content: str = "auto"
    replace: bool = False
    dry_run: bool = False
    age_identity: tuple[Path, ...] = ()
    passphrase_file: Path | None = None  # of the backup
    force: bool = False
    server_binary: Path | None = None
    as_json: bool = False


@dataclass(frozen=True)
class PruneRequest:
    where: StoreFlags
    keep_last: int | None = None
    keep_daily: int | None = None
    keep_weekly: int | None = None
    keep_monthly: int | None = None
    max_age: int | None = None  # days
    dry_run: bool = False
    as_json: bool = False
