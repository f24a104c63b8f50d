"""Where a backup command works: the store, the source, the bundle and its backup settings,
opened from --dest, --source and --dir; and what the settings add to the flags (paths
relative to the bundle, what decrypts backups, the drill server, the retention policy)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from redkeep.actions.backup_requests import StoreFlags
from redkeep.actions.locate import load_bundle
from redkeep.app import Application
from redkeep.backup.encryption import read_identities, read_passphrase
from redkeep.backup.manifest import check_source
from redkeep.backup.retention import Policy
from redkeep.backup.stores import Store, open_store
from redkeep.bundle import Bundle
from redkeep.config.defaults import StandaloneBackup
from redkeep.errors import UsageError

if TYPE_CHECKING:
    from redkeep.backup import drill
    from redkeep.backup.unpack import Decryption
    from redkeep.config.schema import BackupSettings


@dataclass(frozen=True)
class BackupContext:
    store: Store
    source: str | None  # --source, else the bundle's name; None: every source in the store
    bundle: Bundle | None
    settings: BackupSettings | StandaloneBackup

    @classmethod
    def open(cls, where: StoreFlags, app: Application) -> BackupContext:
        """Load the bundle (if any), open the store and check the source name."""
        bundle = load_bundle(app, where.directory, required=False)
        settings = bundle.settings.backup if bundle else StandaloneBackup()
        if where.dest is None and bundle is None:
            raise UsageError("no backup destination: pass --dest, or run inside a bundle")
        dest = where.dest or settings.dest or ""
        if bundle is not None and "://" not in dest and not Path(dest).is_absolute():
            dest = str(bundle.root / dest)
        s3 = settings.s3
        store = open_store(
            dest,
            {
                "sse": s3.sse,
                "kms_key_id": s3.kms_key_id,
                "storage_class": s3.storage_class,
                "checksums": s3.checksums,
            },
        )
        source = where.source or (bundle.settings.name if bundle else None)
        if source is not None:
            check_source(source)
        return cls(store, source, bundle, settings)

    def path(self, value: str | Path | None) -> Path | None:
        """A path from a flag or a setting; relative ones are in the bundle."""
        if value is None:
            return None
        path = Path(value)
        return self.bundle.root / path if self.bundle and not path.is_absolute() else path

    def passphrase_file(self, flag: Path | None) -> Path | None:
        return flag or self.path(self.settings.passphrase_file)

    def decryption(self, identity_files: tuple[Path, ...], passphrase: Path | None) -> Decryption:
        """The keys that open backups: the given identity files (else the configured one)
        and passphrase file (else the configured one)."""
        from redkeep.backup.unpack import Decryption  # noqa: PLC0415 - loads redis-py

        files = list(identity_files) or [
            path for path in [self.path(self.settings.identity_file)] if path is not None
        ]
        passphrase_path = self.passphrase_file(passphrase)
        return Decryption(
            identities=read_identities(files),
            passphrase=read_passphrase(passphrase_path) if passphrase_path else None,
        )

    def drill_server(self, flag: Path | None) -> drill.ServerBinary:
        """The server that drills and restores load backups into: --server-binary, else
        backup.server_binary, else redis-server on PATH."""
        from redkeep.backup import drill  # noqa: PLC0415 - loads redis-py

        if flag is not None:
            return drill.server_binary(str(flag))
        configured = self.path(self.settings.server_binary)
        return drill.server_binary(str(configured) if configured else None, "backup.server_binary")

    def retention(self) -> Policy | None:
        """The bundle's backup.retention; None outside a bundle (standalone runs keep all)."""
        if self.bundle is None:
            return None
        retention = self.bundle.settings.backup.retention
        return Policy(
            keep_last=retention.keep_last,
            keep_daily=retention.keep_daily,
            keep_weekly=retention.keep_weekly,
            keep_monthly=retention.keep_monthly,
            max_age_days=retention.max_age_days,
        )

    @property
    def prunes_after_run(self) -> bool:
        """backup.retention.prune_after_run of a bundle."""
        return self.bundle is not None and self.bundle.settings.backup.retention.prune_after_run
