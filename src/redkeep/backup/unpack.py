"""Open a stored backup for `verify` and `restore`: the keys that decrypt it, each object
downloaded and checked into a private file, the AOF tar unpacked, and the checks made before
anything is downloaded or put in place."""

import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from redkeep.backup import drill, rdbkeys
from redkeep.backup.encryption import KEY_OBJECT, unwrap_key
from redkeep.backup.fetch import OutputError, OutputSink, fetch_object
from redkeep.backup.manifest import Manifest, StoredObject, object_key
from redkeep.backup.rdb import RdbCheck, RdbValidator
from redkeep.backup.stores import Store
from redkeep.errors import DamagedBackup, UsageError

AOF_DIRNAME = "appendonlydir"


@dataclass(frozen=True)
class Decryption:
    """How to open a backup: age identities, and a passphrase for backups with a key.age."""

    identities: list
    passphrase: str | None = None

    def for_backup(self, store: Store, manifest: Manifest) -> list:
        """The identities that open this backup; raise UsageError when it needs one."""
        identities = list(self.identities)
        key_object = manifest.encryption.get("key_object")
        if key_object and self.passphrase:
            data = store.get_bytes(object_key(manifest.source, manifest.id, KEY_OBJECT))
            identities.append(unwrap_key(data, self.passphrase))
        if manifest.encryption.get("mode", "none") != "none" and not identities:
            how = "--age-identity" + (" or --passphrase-file" if key_object else "")
            raise UsageError(f"backup {manifest.id} is encrypted: pass {how} to open it")
        return identities


def download(
    store: Store, manifest: Manifest, item: StoredObject, identities: list, path: Path
) -> RdbCheck | None:
    """Fetch one object into `path` (0600); for an RDB, return its check."""
    validator = RdbValidator() if item.content == "rdb" else None
    out = _create_private(path)
    try:
        fetch_object(
            store,
            object_key(manifest.source, manifest.id, item.name),
            item,
            identities,
            out,
            validator,
            where=str(path.parent),
        )
    finally:
        try:
            out.close()  # flushes the last buffer: a full disk may only show here
        except OSError as error:
            raise OutputSink(out, str(path.parent))._failure(error) from None
    return validator.finish() if validator else None


@dataclass(frozen=True)
class Staged:
    """One object of a backup on disk, as a server reads it."""

    path: Path  # the RDB file, or the AOF directory
    rdb: RdbCheck | None  # an RDB's header, version and CRC64

    @property
    def aof_dirname(self) -> str | None:
        """The `appenddirname` a server loading it needs (None for an RDB)."""
        return None if self.rdb is not None else self.path.name


def stage(
    store: Store, manifest: Manifest, item: StoredObject, identities: list, data: Path
) -> Staged:
    """Put `item` into the directory `data`: `dump.rdb`, or the AOF's `appendonlydir/`
    (its tar is downloaded beside `data` and removed once unpacked)."""
    if item.content == "rdb":
        rdb = download(store, manifest, item, identities, data / "dump.rdb")
        assert rdb is not None
        return Staged(data / "dump.rdb", rdb)
    tar_path = data.parent / f"{data.name}.tar"
    download(store, manifest, item, identities, tar_path)
    directory = extract_aof(tar_path, data)
    tar_path.unlink()
    return Staged(directory, None)


def _create_private(path: Path):
    try:
        return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")
    except OSError as error:
        raise OutputError(
            f"cannot create {path}: {error.strerror}; free space there (or point TMPDIR "
            "elsewhere for verify) and try again"
        ) from None


def extract_aof(tar_path: Path, into: Path) -> Path:
    """Unpack the AOF tar into `into`; only plain files under appendonlydir/ are accepted."""
    try:
        with tarfile.open(tar_path, "r:") as tar:
            tar.extractall(into, filter="data")
    except tarfile.TarError as error:
        raise DamagedBackup(f"{tar_path.name}: not a tar of an AOF directory ({error})") from None
    except OSError as error:
        raise OutputError(f"cannot unpack the AOF into {into}: {error.strerror}") from None
    directory = into / AOF_DIRNAME
    if not directory.is_dir():
        raise DamagedBackup(f"{tar_path.name}: no {AOF_DIRNAME}/ inside")
    return directory


def describe(manifest: Manifest) -> str:
    """`backup ID (made by redis 7.0.15)`, as far as the manifest says."""
    made_by = " ".join(str(manifest.server.get(k) or "") for k in ("engine", "version")).strip()
    return f"backup {manifest.id}" + (f" (made by {made_by})" if made_by else "")


def require_readable(server: drill.ServerBinary, manifest: Manifest, doing: str) -> None:
    """Before anything is downloaded: the drill server can read this backup's RDB format."""
    engine, version = manifest.rdb.get("engine"), manifest.rdb.get("version")
    rdb = manifest.object("rdb") is not None and engine in ("redis", "valkey")
    if rdb and isinstance(version, int):
        drill.require_readable(server, engine, version, describe(manifest), doing)


@dataclass(frozen=True)
class Snapshot:
    """What a downloaded RDB holds per database, walked from the file: `keyspace` is
    {"dbN": {"keys", "expires"}}, or None with `problem` saying why it could not be counted."""

    keyspace: dict[str, dict[str, int]] | None
    problem: str = ""


def read_snapshot(path: Path) -> Snapshot:
    """Count the keys and expires per db of the RDB at `path` (checked against its manifest's
    SHA-256 already, so these are the captured snapshot's counts)."""
    try:
        return Snapshot(rdbkeys.file_keyspace(path))
    except rdbkeys.Unknown as error:
        return Snapshot(None, str(error))
    except OSError as error:
        raise OutputError(f"cannot read back {path}: {error.strerror or error}") from None


def snapshot_counts_problem(snapshot: Snapshot, manifest: Manifest) -> str | None:
    """The walked RDB against the keys and expires per db its manifest recorded; None when
    they agree, or when the manifest recorded none (redkeep no longer counts while capturing:
    the manifest's SHA-256 of the raw bytes already proves the file is the snapshot)."""
    recorded = manifest.rdb.get("keyspace")
    if recorded is None:
        return None
    found = snapshot.keyspace
    if found is None:
        return f"its keys cannot be counted ({snapshot.problem})"
    differences = [
        f"{db} {name}: {found.get(db, {}).get(name, 0)} in the file, "
        f"{recorded.get(db, {}).get(name, 0)} in the manifest"
        for db in sorted(set(found) | set(recorded))
        for name in ("keys", "expires")
        if found.get(db, {}).get(name, 0) != recorded.get(db, {}).get(name, 0)
    ]
    return "; ".join(differences) or None


def expected_keyspace(manifest: Manifest, snapshot: Snapshot | None) -> dict | None:
    """What the snapshot holds per db: the manifest's record (a backup from a redkeep that
    counted while capturing), else the walk of the downloaded file; None when neither knows."""
    recorded = manifest.rdb.get("keyspace")
    if recorded is not None:
        return recorded
    return snapshot.keyspace if snapshot is not None else None


def databases_for(manifest: Manifest, snapshot: Snapshot | None = None) -> int:
    """Databases the drill server needs: every db the source used or the snapshot holds,
    plus one spare for checks."""
    windows = [*manifest.keyspace.values(), expected_keyspace(manifest, snapshot) or {}]
    used = [int(db[2:]) for window in windows for db in window if db[2:].isdigit()]
    return max(16, max(used, default=0) + 2)
