"""One `redkeep backup run`: capture, store, report.

Read the server's state, stream each capture through check -> compress -> encrypt -> hash ->
store, prove the stored bytes are ciphertext when encryption is on, write the report and then
the manifest (last: a backup without one is incomplete), then record metrics and notify. A
failure at any point aborts what was being written and is reported the same way.
"""

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redkeep.backup import aoflock, notify
from redkeep.backup.encryption import KEY_OBJECT, Encryption, plan_encryption
from redkeep.backup.lastrun import write_last_run
from redkeep.backup.manifest import (
    MANIFEST,
    REPORT,
    Manifest,
    StoredObject,
    new_backup_id,
    object_key,
)
from redkeep.backup.metrics import record_run
from redkeep.backup.pipeline import (
    AGE_MAGIC,
    SUFFIX,
    AgeEncryptSink,
    HashingSink,
    SinkFile,
    TeeSink,
    compressor,
)
from redkeep.backup.rdb import RdbValidator
from redkeep.backup.replication import capture_rdb
from redkeep.backup.report import BackupFailed, BackupReport, Stored, report_cluster
from redkeep.backup.serverinfo import read_info
from redkeep.backup.stores import Store
from redkeep.config.defaults import BackupDefaults
from redkeep.errors import RedkeepError, StoreError
from redkeep.redis.target import Target

if TYPE_CHECKING:
    from redkeep.backup.aof import AofLocation


@dataclass(frozen=True)
class RunOptions:
    """Everything one run needs, resolved: no file is read and no setting looked up after."""

    store: Store
    source: str
    kind: str  # rdb, aof or both
    compression: str = "zstd"
    recipients: tuple[str, ...] = ()  # age public keys
    passphrase: str | None = None
    idle_timeout: float = 60.0
    metrics_file: Path | None = None
    channels: notify.Channels = field(default_factory=notify.Channels)
    notify_on_success: bool = False
    progress: Callable[[int], None] | None = None  # told the size of every chunk received
    state_dir: Path | None = None  # the AOF lock and paused setting (aof.state_dir)
    last_run_file: Path | None = None  # a scheduled run records its result here (status)
    # A cluster (or sentinel) deployment: where to capture each shard from, and other nodes
    # to read the slot map from when the target does not answer.
    capture_from: str = "replica"  # replica (one in sync, else the primary) or primary
    replicated: bool = False  # target and seeds are a Sentinel deployment's data nodes
    seeds: tuple[Target, ...] = ()
    settle_timeout: float = 30.0  # seconds to wait for a settled slot map before a capture
    # Bytes behind its primary a replica may be and still be captured from.
    max_replica_gap: int = BackupDefaults.max_replica_gap_bytes


def run_backup(
    options: RunOptions, target: Target, aof_target: Target | None, now: dt.datetime
) -> BackupReport:
    """Take one backup of `target`; return the run report.

    Raise BackupFailed, which carries the failure report, on failure. Every failure - also an
    unexpected one, or Ctrl-C/SIGTERM - is reported, counted in the metrics and notified
    before it propagates.
    """
    started = time.monotonic()
    backup_id = new_backup_id(now)
    base = BackupReport(
        id=backup_id,
        source=options.source,
        dest=options.store.url,
        type=options.kind,
        started=now.isoformat(),
        duration_seconds=0.0,
    )
    manifest = Manifest(backup_id, options.source, options.kind, now.isoformat())
    warnings: tuple[str, ...] = ()
    try:
        warnings = tuple(_capture_all(options, target, aof_target, manifest))
        manifest.finished = dt.datetime.now(dt.UTC).isoformat()
        manifest.duration_seconds = round(time.monotonic() - started, 3)
        report = replace(
            base,
            stored=_stored(manifest),
            warnings=warnings,
            duration_seconds=manifest.duration_seconds,
        )
        options.store.put_bytes(_key(manifest, REPORT), _json(report))
        options.store.put_bytes(_key(manifest, MANIFEST), manifest.to_json())
    except KeyboardInterrupt:
        error = "interrupted (Ctrl-C or SIGTERM) before the backup was complete"
        _after_run(options, manifest, _failed(base, error, warnings, started))
        raise
    except Exception as error:  # noqa: BLE001 - every failure must be reported and notified
        failure = error if isinstance(error, RedkeepError) else unexpected(error)
        report = _after_run(options, manifest, _failed(base, failure.message, warnings, started))
        raise BackupFailed(failure, report) from error
    return _after_run(options, manifest, report)


def _failed(
    base: BackupReport, error: str, warnings: tuple[str, ...], started: float
) -> BackupReport:
    duration = round(time.monotonic() - started, 3)
    return replace(base, error=error, warnings=warnings, duration_seconds=duration)


def unexpected(error: Exception) -> RedkeepError:
    """A failure redkeep did not foresee, as one line (a file error names the file)."""
    if isinstance(error, OSError):
        where = f"{error.filename}: " if error.filename else ""
        return RedkeepError(f"{where}{error.strerror or error}")
    return RedkeepError(f"{type(error).__name__}: {error}")


def _capture_all(
    options: RunOptions, target: Target, aof_target: Target | None, manifest: Manifest
) -> list[str]:
    """Capture and store every object of the run; return warnings for the report."""
    encryption = plan_encryption(list(options.recipients), options.passphrase)
    manifest.encryption = {"mode": encryption.mode, "recipients": encryption.public_keys}
    info = read_info(target)
    if info.get("cluster_enabled") == 1:
        from redkeep.actions.backup_cluster import capture_cluster  # noqa: PLC0415 - cycle

        warnings = capture_cluster(options, [target, *options.seeds], manifest, encryption)
        _finish_encryption(options, manifest, encryption)
        return warnings
    if options.replicated or info.get("redis_mode") == "sentinel":
        from redkeep.actions import backup_sentinel  # noqa: PLC0415 - cycle

        nodes = [target, *options.seeds] if options.replicated else []
        nodes = nodes or backup_sentinel.data_nodes(target)
        warnings = backup_sentinel.capture_replicated(options, nodes, manifest, encryption)
        _finish_encryption(options, manifest, encryption)
        return warnings
    manifest.server = server_facts(info)
    manifest.keyspace["before"] = keyspace_of(info)
    state = options.state_dir or aoflock.state_dir(None)
    warnings = _paused_warning(state, info, target)
    # The AOF lock is taken first: a second `--type both` fails now, not after its RDB.
    aof = _lock_aof(aof_target or target, state) if options.kind in ("aof", "both") else None
    try:
        if options.kind in ("rdb", "both"):
            _store_rdb(options, target, manifest, encryption, int(info.get("used_memory", 0)))
        if aof is not None:
            warnings += _store_aof(options, aof_target or target, manifest, encryption, *aof)
    finally:
        if aof is not None:
            aof[1].close()
    _finish_encryption(options, manifest, encryption)
    manifest.keyspace["after"] = keyspace_of(read_info(target))
    return warnings


def _finish_encryption(options: RunOptions, manifest: Manifest, encryption: Encryption) -> None:
    """Store the passphrase-encrypted key (if any); prove every object is ciphertext."""
    if encryption.key_object is not None:
        options.store.put_bytes(_key(manifest, KEY_OBJECT), encryption.key_object)
        manifest.encryption["key_object"] = KEY_OBJECT
    if encryption.enabled:
        _prove_encrypted(options.store, manifest)


def _aof():
    # redis-py (for CONFIG SET) is loaded only by AOF backups: RDB runs start faster without.
    from redkeep.backup import aof  # noqa: PLC0415

    return aof


def _paused_warning(state: Path, info: dict[str, Any], target: Target) -> list[str]:
    """A warning when a killed AOF backup left this server's automatic rewrites paused."""
    saved = aoflock.paused_by_a_killed_run(state, str(info.get("run_id", "")))
    if saved is None:
        return []
    setting = aoflock.REWRITE_SETTING
    return [
        f"a killed AOF backup left {setting} paused (0) on {target.where}: the next "
        f"`backup run --type aof` puts back {saved}, or run CONFIG SET {setting} {saved}"
    ]


def _lock_aof(target: Target, state: Path) -> tuple["AofLocation", aoflock.AofLock]:
    """Where the server keeps its AOF, and the lock for backing it up (held by the caller)."""
    from redkeep.redis.client import session  # noqa: PLC0415

    aof = _aof()
    with session(target) as client:
        location = aof.locate(client, target)
        run_id = str(client.info("server").get("run_id", ""))
    return location, aoflock.AofLock(state, run_id)


def server_facts(info: dict[str, Any]) -> dict[str, Any]:
    """What the manifest records about the server at capture time."""
    engine = "valkey" if info.get("server_name") == "valkey" else "redis"
    return {
        "engine": engine,
        "version": info.get("valkey_version") or info.get("redis_version"),
        "mode": info.get("redis_mode") or info.get("server_mode"),  # Valkey: server_mode
        "role": info.get("role"),
        "used_memory": info.get("used_memory"),
    }


def keyspace_of(info: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Keys and keys-with-expiry per database, from INFO."""
    return {
        name: {"keys": int(value["keys"]), "expires": int(value["expires"])}
        for name, value in info.items()
        if name.startswith("db") and name[2:].isdigit() and isinstance(value, dict)
    }


def _chain(options: RunOptions, manifest: Manifest, name: str, encryption: Encryption, hint: int):
    """check -> (raw hash) -> compress -> encrypt -> (stored hash) -> store writer."""
    writer = options.store.writer(_key(manifest, name), size_hint=hint)
    stored = HashingSink(writer)
    encrypted = AgeEncryptSink(encryption.recipients, stored) if encryption.enabled else stored
    raw = HashingSink(compressor(options.compression, encrypted))
    return raw, stored


def _object_name(base: str, options: RunOptions, encryption: Encryption) -> str:
    return base + SUFFIX[options.compression] + (".age" if encryption.enabled else "")


def _record(manifest, name, content, options, encryption, raw, stored) -> None:
    manifest.objects.append(_stored_object(name, content, options, encryption, raw, stored))


def _stored_object(name, content, options, encryption, raw, stored) -> StoredObject:
    return StoredObject(
        name=name,
        content=content,
        size=stored.size,
        sha256=stored.sha256.hexdigest(),
        raw_size=raw.size,
        raw_sha256=raw.sha256.hexdigest(),
        compression=options.compression,
        encryption=encryption.mode,
    )


def _store_rdb(
    options: RunOptions, target: Target, manifest: Manifest, encryption: Encryption, hint: int
) -> None:
    name = _object_name("dump.rdb", options, encryption)
    manifest.rdb, item = store_rdb_object(options, target, manifest, encryption, name, hint)
    manifest.objects.append(item)


def store_rdb_object(
    options: RunOptions,
    target: Target,
    manifest: Manifest,
    encryption: Encryption,
    name: str,
    hint: int,
) -> tuple[dict[str, Any], StoredObject]:
    """Capture `target`'s RDB into the object `name`; return its record and the object.
    Safe to run on several threads at once (a cluster's shards): it only reads `manifest`."""
    raw, stored = _chain(options, manifest, name, encryption, hint)
    validator = RdbValidator()
    head = TeeSink(validator.feed, raw)
    if options.progress is not None:
        progress = options.progress
        head = TeeSink(lambda chunk: progress(len(chunk)), head)
    try:
        capture = capture_rdb(target, head.write, options.idle_timeout)
        check = validator.finish()
        head.close()
    except BaseException:
        head.abort()
        raise
    # What the snapshot holds per database is counted by `verify` and `restore` in the
    # downloaded file (backup/rdbkeys.py), not here: it is most of a capture's CPU.
    record = check.as_dict() | {
        "transfer": capture.transfer,
        "replid": capture.replid,
        "offset": capture.offset,
    }
    return record, _stored_object(name, "rdb", options, encryption, raw, stored)


def _store_aof(
    options: RunOptions,
    target: Target,
    manifest: Manifest,
    encryption: Encryption,
    location: "AofLocation",
    lock: aoflock.AofLock,
) -> list[str]:
    from redkeep.redis.client import session  # noqa: PLC0415

    aof = _aof()
    name = _object_name("appendonlydir.tar", options, encryption)
    with session(target) as client:
        snapshot = aof.snapshot(client, target, location, lock)
        setting = client.config_get(aoflock.REWRITE_SETTING).get(aoflock.REWRITE_SETTING)
    try:
        raw, stored = _chain(options, manifest, name, encryption, sum(snapshot.sizes.values()))
        try:
            aof.write_tar(snapshot, SinkFile(raw))
            raw.close()
        except BaseException:
            raw.abort()
            raise
    finally:
        snapshot.cleanup()
    manifest.aof = {
        "manifest": snapshot.manifest,
        "files": {name: size for name, size in snapshot.sizes.items()},
        "hard_linked": snapshot.linked,
    }
    _record(manifest, name, "aof", options, encryption, raw, stored)
    if setting == "0":  # the user's own value: automatic rewrites are off for good
        return [
            f"{aoflock.REWRITE_SETTING} is 0 on {target.where}: Redis never rewrites the AOF by "
            "itself, so it grows until the disk is full; set it (the default is 100) unless "
            "something else runs BGREWRITEAOF"
        ]
    return []


def _prove_encrypted(store: Store, manifest: Manifest) -> None:
    """Read back the first bytes of each object: they must be age ciphertext, never plaintext."""
    for item in manifest.objects:
        key = _key(manifest, item.name)
        head = store.head(key, len(AGE_MAGIC))
        if head != AGE_MAGIC:
            store.delete([key])
            raise StoreError(
                f"{key} does not start with the age header although encryption is on; "
                "it was deleted and the backup failed"
            )


def _stored(manifest: Manifest) -> Stored:
    return Stored(
        finished=manifest.finished,
        bytes_stored=sum(item.size for item in manifest.objects),
        bytes_raw=sum(item.raw_size for item in manifest.objects),
        objects=tuple(item.name for item in manifest.objects),
        encryption=manifest.encryption.get("mode", "none"),
        rdb=manifest.rdb,
        keyspace=manifest.keyspace.get("before", {}),
        cluster=report_cluster(manifest.cluster) if manifest.cluster else None,
    )


def _after_run(options: RunOptions, manifest: Manifest, report: BackupReport) -> BackupReport:
    """Clean up after a failure, record metrics, notify; return the report with how that
    went. Never raises (it runs while failing)."""
    problems = []
    if not report.succeeded:
        # Without a manifest its objects are of no use: they would only fill the store.
        try:
            options.store.discard(object_key(manifest.source, manifest.id, ""))
        except Exception as error:  # noqa: BLE001 - the destination may be what failed
            problems.append(f"could not remove what the failed run stored: {error}")
        # The failure report stays where the backup would be, so its prefix explains itself.
        try:
            options.store.put_bytes(_key(manifest, REPORT), _json(report))
        except Exception as error:  # noqa: BLE001 - the destination may be what failed
            problems.append(f"could not store the failure report: {error}")
    if options.metrics_file is not None:
        try:
            record_run(options.metrics_file, report, time.time())
        except OSError as error:
            problems.append(f"could not write {options.metrics_file}: {error.strerror}")
    if options.last_run_file is not None:
        try:
            write_last_run(options.last_run_file, report, time.time())
        except OSError as error:
            problems.append(f"could not write {options.last_run_file}: {error.strerror}")
    sent = notify.send(options.channels, report, options.notify_on_success)
    return replace(report, notifications=sent).with_problems(*problems)


def _key(manifest: Manifest, name: str) -> str:
    return object_key(manifest.source, manifest.id, name)


def _json(report: BackupReport) -> bytes:
    return json.dumps(report.to_json(), indent=2, default=str).encode()
