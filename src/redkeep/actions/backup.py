"""`redkeep backup run`, `list` and `prune`.

A run: read the server's state, stream each capture through check -> compress -> encrypt ->
hash -> store, prove the stored bytes are ciphertext when encryption is on, write the report
and then the manifest (last: a backup without one is incomplete), then record metrics and
notify. A failure at any point aborts what was being written and is reported the same way.
"""

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redkeep.backup import aoflock, notify, retention
from redkeep.backup.encryption import KEY_OBJECT, Encryption, plan_encryption
from redkeep.backup.lastrun import write_last_run
from redkeep.backup.manifest import (
    MANIFEST,
    REPORT,
    VERIFIED,
    Manifest,
    StoredObject,
    new_backup_id,
    object_key,
    time_of,
)
from redkeep.backup.metrics import write_metrics
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
from redkeep.backup.rdbkeys import KeyCounter
from redkeep.backup.replication import capture_rdb
from redkeep.backup.serverinfo import read_info
from redkeep.backup.stores import Store
from redkeep.errors import DamagedBackup, RedkeepError, StoreError
from redkeep.redis.target import Target
from redkeep.signals import interrupted_by_signals

if TYPE_CHECKING:
    from redkeep.backup.aof import AofLocation


@dataclass
class RunOptions:
    store: Store
    source: str
    kind: str  # rdb, aof or both
    compression: str = "zstd"
    public_keys: list[str] = field(default_factory=list)
    passphrase: str | None = None
    idle_timeout: float = 60.0
    metrics_file: Path | None = None
    channels: notify.Channels = field(default_factory=notify.Channels)
    notify_on_success: bool = False
    progress: Callable[[int], None] | None = None  # told the size of every chunk received
    state_dir: Path | None = None  # the AOF lock and paused setting (aof.state_dir)
    last_run_file: Path | None = None  # a scheduled run records its result here (status)


def run_backup(
    options: RunOptions, target: Target, aof_target: Target | None, now: dt.datetime
) -> dict[str, Any]:
    """Take one backup of `target`; return the run report.

    Raise RedkeepError on failure, with the failure report as its `report` attribute. Every
    failure - also an unexpected one, or Ctrl-C/SIGTERM - is reported, counted in the metrics
    and notified before it propagates.
    """
    started = time.monotonic()
    backup_id = new_backup_id(now)
    report: dict[str, Any] = {
        "result": "failure",
        "id": backup_id,
        "source": options.source,
        "dest": options.store.url,
        "type": options.kind,
        "started": now.isoformat(),
    }
    manifest = Manifest(backup_id, options.source, options.kind, now.isoformat())
    try:
        warnings = _capture_all(options, target, aof_target, manifest)
        if warnings:
            report["warnings"] = warnings
        manifest.finished = dt.datetime.now(dt.UTC).isoformat()
        manifest.duration_seconds = round(time.monotonic() - started, 3)
        report |= _success_fields(manifest)
        options.store.put_bytes(_key(manifest, REPORT), _json(report))
        options.store.put_bytes(_key(manifest, MANIFEST), manifest.to_json())
    except KeyboardInterrupt:
        report["error"] = "interrupted (Ctrl-C or SIGTERM) before the backup was complete"
        _after_run(options, manifest, report, started)
        raise
    except Exception as error:  # noqa: BLE001 - every failure must be reported and notified
        failure = error if isinstance(error, RedkeepError) else _unexpected(error)
        report["error"] = failure.message
        _after_run(options, manifest, report, started)
        failure.report = report  # type: ignore[attr-defined]
        raise failure from None
    _after_run(options, manifest, report, started)
    return report


def _unexpected(error: Exception) -> RedkeepError:
    if isinstance(error, OSError):
        where = f"{error.filename}: " if error.filename else ""
        return RedkeepError(f"{where}{error.strerror or error}")
    return RedkeepError(f"{type(error).__name__}: {error}")


def _capture_all(
    options: RunOptions, target: Target, aof_target: Target | None, manifest: Manifest
) -> list[str]:
    """Capture and store every object of the run; return warnings for the report."""
    encryption = plan_encryption(options.public_keys, options.passphrase)
    manifest.encryption = {"mode": encryption.mode, "recipients": encryption.public_keys}
    info = read_info(target)
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
    if encryption.key_object is not None:
        options.store.put_bytes(_key(manifest, KEY_OBJECT), encryption.key_object)
        manifest.encryption["key_object"] = KEY_OBJECT
    if encryption.enabled:
        _prove_encrypted(options.store, manifest)
    manifest.keyspace["after"] = keyspace_of(read_info(target))
    return warnings


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
    manifest.objects.append(
        StoredObject(
            name=name,
            content=content,
            size=stored.size,
            sha256=stored.sha256.hexdigest(),
            raw_size=raw.size,
            raw_sha256=raw.sha256.hexdigest(),
            compression=options.compression,
            encryption=encryption.mode,
        )
    )


def _store_rdb(
    options: RunOptions, target: Target, manifest: Manifest, encryption: Encryption, hint: int
) -> None:
    name = _object_name("dump.rdb", options, encryption)
    raw, stored = _chain(options, manifest, name, encryption, hint)
    validator = RdbValidator()
    counter = KeyCounter()
    head = TeeSink(counter.feed, TeeSink(validator.feed, raw))
    if options.progress is not None:
        progress = options.progress
        head = TeeSink(lambda chunk: progress(len(chunk)), head)
    try:
        capture = capture_rdb(target, head.write, options.idle_timeout)
        check = validator.finish()
        head.close()
    except BaseException:
        counter.close()
        head.abort()
        raise
    manifest.rdb = check.as_dict() | {
        "transfer": capture.transfer,
        "replid": capture.replid,
        "offset": capture.offset,
    }
    # What the snapshot holds, per database: what `verify` expects the drill to load.
    keyspace = counter.finish()
    if keyspace is not None:
        manifest.rdb["keyspace"] = keyspace
    else:
        manifest.rdb["keyspace_unknown"] = counter.problem
    _record(manifest, name, "rdb", options, encryption, raw, stored)


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


def _success_fields(manifest: Manifest) -> dict[str, Any]:
    return {
        "result": "success",
        "finished": manifest.finished,
        "duration_seconds": manifest.duration_seconds,
        "bytes_stored": sum(item.size for item in manifest.objects),
        "bytes_raw": sum(item.raw_size for item in manifest.objects),
        "objects": [item.name for item in manifest.objects],
        "encryption": manifest.encryption.get("mode"),
        "rdb": manifest.rdb,
        "keyspace": manifest.keyspace.get("before", {}),
    }


def _after_run(
    options: RunOptions, manifest: Manifest, report: dict[str, Any], started: float
) -> None:
    """The failure report, metrics, notifications; never raises (it runs while failing)."""
    report.setdefault("duration_seconds", round(time.monotonic() - started, 3))
    problems = []
    if report["result"] != "success":
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
            write_metrics(
                options.metrics_file,
                options.source,
                report["result"] == "success",
                time.time(),
                report["duration_seconds"],
                report.get("bytes_stored", 0),
            )
        except OSError as error:
            problems.append(f"could not write {options.metrics_file}: {error.strerror}")
    if options.last_run_file is not None:
        try:
            write_last_run(options.last_run_file, report, time.time())
        except OSError as error:
            problems.append(f"could not write {options.last_run_file}: {error.strerror}")
    report["notifications"] = notify.send(options.channels, report, options.notify_on_success)
    if problems:
        report.setdefault("warnings", []).extend(problems)


def _key(manifest: Manifest, name: str) -> str:
    return object_key(manifest.source, manifest.id, name)


def _json(data: Any) -> bytes:
    return json.dumps(data, indent=2, default=str).encode()


def run_periodically(
    interval: float,
    job: Callable[[], None],
    on_error: Callable[[RedkeepError], None],
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Run `job` every `interval` seconds until Ctrl-C, SIGTERM or SIGHUP; failures go to
    `on_error` and do not stop the schedule (the run's notifications tell people)."""
    try:
        with interrupted_by_signals():
            while True:
                started = time.monotonic()
                try:
                    job()
                except RedkeepError as error:
                    on_error(error)
                except Exception as error:  # noqa: BLE001 - a schedule must outlive one bad run
                    on_error(_unexpected(error))
                sleep(max(0.0, interval - (time.monotonic() - started)))
    except KeyboardInterrupt:
        return


# --- list ---------------------------------------------------------------------------------


@dataclass
class Listed:
    source: str
    id: str
    time: dt.datetime
    complete: bool
    verified: bool
    objects: dict[str, int]
    manifest: Manifest | None = None
    damaged: bool = False
    problem: str = ""  # why a damaged manifest cannot be used

    def row(self) -> dict[str, Any]:
        manifest = self.manifest
        return {
            "id": self.id,
            "source": self.source,
            "time": self.time.isoformat(),
            "type": manifest.type if manifest else "?",
            "size": sum(item.size for item in manifest.objects)
            if manifest
            else sum(self.objects.values()),
            "encrypted": bool(manifest and manifest.encryption.get("mode", "none") != "none"),
            "verified": self.verified,
            "complete": self.complete,
            "damaged": self.damaged,
            **({"problem": self.problem} if self.problem else {}),
        }


def list_backups(store: Store, source: str | None = None) -> list[Listed]:
    """Every backup in `store` (of `source`), oldest first; incomplete ones are marked."""
    groups: dict[tuple[str, str], dict[str, int]] = {}
    for key, size in store.list_objects(f"{source}/" if source else "").items():
        parts = key.split("/")
        if len(parts) == 3:
            groups.setdefault((parts[0], parts[1]), {})[parts[2]] = size
    found = []
    for (src, backup_id), objects in groups.items():
        try:
            started = time_of(backup_id)
        except ValueError:
            continue  # not ours
        listed = Listed(src, backup_id, started, MANIFEST in objects, False, objects)
        if listed.complete:
            try:
                manifest = Manifest.from_json(store.get_bytes(object_key(src, backup_id, MANIFEST)))
                manifest.check_identity(src, backup_id)
            except DamagedBackup as error:  # unusable, but it must not hide the other backups
                listed.complete, listed.damaged, listed.problem = False, True, error.message
                found.append(listed)
                continue
            listed.manifest = manifest
            # The manifest's start time has microseconds: two backups in one second still order.
            listed.time = manifest.started
            listed.verified = _verified(store, src, backup_id, objects)
        found.append(listed)
    return sorted(found, key=lambda item: (item.source, item.time, item.id))


def _verified(store: Store, source: str, backup_id: str, objects: dict[str, int]) -> bool:
    if VERIFIED not in objects:
        return False
    try:
        record = json.loads(store.get_bytes(object_key(source, backup_id, VERIFIED)))
    except (ValueError, StoreError):
        return False
    return record.get("result") == "ok"


def find_backup(store: Store, source: str | None, backup_id: str) -> Listed:
    """The complete backup `backup_id` (or `latest`) of `source`; raise if there is none."""
    complete = [item for item in list_backups(store, source) if item.complete]
    if backup_id == "latest":
        if not complete:
            raise RedkeepError(
                f"no complete backup in {store.url}" + (f" for {source}" if source else "")
            )
        return max(complete, key=lambda item: item.time)
    for item in complete:
        if item.id == backup_id:
            return item
    for item in list_backups(store, source):
        if item.id == backup_id:
            why = item.problem if item.damaged else "it is incomplete (no manifest)"
            raise RedkeepError(f"backup {backup_id} cannot be used: {why}")
    raise RedkeepError(f"no backup {backup_id} in {store.url}; `redkeep backup list` shows them")


# --- prune --------------------------------------------------------------------------------


def prune(
    store: Store, source: str | None, policy: retention.Policy, now: dt.datetime, dry_run: bool
) -> list[dict[str, Any]]:
    """Apply `policy` to each source separately; delete (unless `dry_run`) what it drops."""
    retention.require(policy)
    listed = list_backups(store, source)
    by_source: dict[str, list[Listed]] = {}
    for item in listed:
        by_source.setdefault(item.source, []).append(item)
    results = []
    for src, items in by_source.items():
        index = {item.id: item for item in items}
        entries = [retention.Backup(i.id, i.time, i.complete, i.verified) for i in items]
        for decision in retention.plan(entries, policy, now):
            item = index[decision.backup.id]
            if not decision.keep and not dry_run:
                _delete_backup(store, item)
            results.append(
                {
                    "source": src,
                    "id": item.id,
                    "time": item.time.isoformat(),
                    "action": "keep" if decision.keep else "delete",
                    "reason": decision.reason,
                }
            )
    return results


def _delete_backup(store: Store, item: Listed) -> None:
    if not item.complete:  # all of it, with what a killed run left: temp files, uploads
        store.discard(object_key(item.source, item.id, ""))
        return
    # The manifest goes first: a half-deleted backup is then incomplete, not broken.
    for name in sorted(item.objects, key=lambda name: name != MANIFEST):
        store.delete([object_key(item.source, item.id, name)])
