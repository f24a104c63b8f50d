"""`redkeep backup restore`: into a file, or into a live server.

To a file: the RDB, or the AOF directory, through a temp file renamed into place only when
every check passed. Into a live server: the backup is loaded into a drill server and every key
copied with DUMP/RESTORE, TTLs kept, after the target was checked (restore_preflight.py).
Either way a backup whose last verify failed, or whose RDB does not hold what its manifest
recorded, is refused unless --force.
"""

import contextlib
import dataclasses
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import redis

from redkeep.actions.backup_catalog import Listed
from redkeep.actions.restore_preflight import ClientLimits, preflight, require_target_reads
from redkeep.backup import drill
from redkeep.backup.manifest import VERIFIED, Manifest, StoredObject, object_key
from redkeep.backup.results import FileRestoreResult, ServerRestoreResult, Verdict
from redkeep.backup.stores import Store
from redkeep.backup.transfer import ConnectionLost, TransferCount, copy_keys
from redkeep.backup.unpack import (
    Decryption,
    Snapshot,
    Staged,
    databases_for,
    read_snapshot,
    require_readable,
    snapshot_counts_problem,
    stage,
)
from redkeep.errors import DamagedBackup, RedkeepError, StoreError, UsageError
from redkeep.redis.client import client_for, explain_failure, session
from redkeep.redis.target import Target


def restore_to_file(
    store: Store,
    listed: Listed,
    decryption: Decryption,
    path: Path,
    content: str,
    replace: bool,
    dry_run: bool = False,
    force: bool = False,
) -> FileRestoreResult:
    """Write the backup's RDB file (or AOF directory) to `path`; nothing there on failure."""
    manifest = listed.manifest
    assert manifest is not None
    item = object_to_restore(manifest, content)
    _check_destination(path, item, replace)
    result = FileRestoreResult(manifest.id, str(path), item.content, item.raw_size)
    warnings = refuse_failed_verdict(store, manifest, force)
    if dry_run:
        return dataclasses.replace(result, warnings=warnings, dry_run=True)
    identities = decryption.for_backup(store, manifest)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".redkeep-restore-", dir=path.parent))
    try:
        (staging / "out").mkdir()
        staged = stage(store, manifest, item, identities, staging / "out")
        if staged.rdb is not None and "keyspace" in manifest.rdb:  # counted by an older redkeep
            warnings += _check_counts(read_snapshot(staged.path), manifest, force)
        _swap_into_place(staged.path, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dataclasses.replace(result, warnings=warnings, rdb=staged.rdb)


def refuse_failed_verdict(store: Store, manifest: Manifest, force: bool) -> tuple[str, ...]:
    """Refuse a backup whose last `verify` failed (a warning with `force`)."""
    try:
        verdict = Verdict.from_json(
            store.get_bytes(object_key(manifest.source, manifest.id, VERIFIED))
        )
    except (StoreError, ValueError):
        return ()  # never verified (or the record is unreadable): nothing to go by
    if not verdict.failed:
        return ()
    why = f"backup {manifest.id} FAILED verification"
    why += f" on {verdict.verified_at[:19]}: {verdict.error}"
    if not force:
        raise DamagedBackup(f"{why}; restore another backup, or pass --force to restore it anyway")
    return (f"{why}; restoring it anyway (--force)",)


def _check_counts(snapshot: Snapshot, manifest: Manifest, force: bool) -> tuple[str, ...]:
    """Refuse an RDB whose keys per db differ from its manifest's (a warning with `force`)."""
    problem = snapshot_counts_problem(snapshot, manifest)
    if problem is None:
        return ()
    why = f"backup {manifest.id} does not hold the keys its manifest recorded: {problem}"
    if not force:
        raise DamagedBackup(f"{why}; restore another backup, or pass --force to restore it anyway")
    return (f"{why}; restoring it anyway (--force)",)


def _check_destination(path: Path, item: StoredObject, replace: bool) -> None:
    """Refuse to overwrite without --replace, and never replace what is not ours to replace."""
    if item.content == "rdb" and path.is_dir():
        raise UsageError(f"{path} is a directory; give the file to write, e.g. {path}/dump.rdb")
    if not path.exists():
        return
    if not replace:
        raise UsageError(f"{path} exists; pass --replace to overwrite it")
    if item.content == "aof" and not (path.is_dir() and any(path.glob("*.manifest"))):
        raise UsageError(
            f"{path} is not an AOF directory (no *.manifest in it); refusing to replace it"
        )


def _swap_into_place(staged: Path, path: Path) -> None:
    """Move `staged` to `path`; an old `path` is removed only once the new one is in place."""
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.replaced-{os.getpid()}")
        os.replace(path, old)
    try:
        os.replace(staged, path)
    except OSError:
        if old is not None:
            os.replace(old, path)
        raise
    if old is not None:
        shutil.rmtree(old) if old.is_dir() else old.unlink()


def object_to_restore(manifest: Manifest, content: str) -> StoredObject:
    """The object to restore: `rdb`, `aof`, or `auto` (the RDB when there is one)."""
    if content == "auto":
        wanted = manifest.object("rdb") or manifest.object("aof")
    else:
        wanted = manifest.object(content)
    if wanted is None:
        raise UsageError(f"backup {manifest.id} has no {content} object ({manifest.type} backup)")
    return wanted


def restore_to_server(
    store: Store,
    listed: Listed,
    decryption: Decryption,
    target: Target,
    content: str,
    replace: bool,
    dry_run: bool,
    server: drill.ServerBinary,
    force: bool = False,
) -> ServerRestoreResult:
    """Load the backup in a drill server, then copy every key into `target` (TTLs kept).

    Refuses a target that has keys unless `replace`, and checks before writing anything that
    the target has the databases, the memory, the client limits and the RDB version the backup
    needs. With `dry_run` only reports the plan.
    """
    manifest = listed.manifest
    assert manifest is not None
    item = object_to_restore(manifest, content)
    warnings = refuse_failed_verdict(store, manifest, force)
    identities = decryption.for_backup(store, manifest)
    existing = target_keyspace(target)
    if existing and not replace:
        counts = ", ".join(f"{db}: {v['keys']} keys" for db, v in existing.items())
        raise UsageError(
            f"{target.where} is not empty ({counts}); pass --replace to overwrite keys that "
            "exist in the backup (others are left alone)"
        )
    if not dry_run:
        with session(target) as client:
            require_target_reads(client, target, manifest)
    require_readable(server, manifest, "restore")
    workdir = drill.scratch_dir()
    try:
        data = workdir / "data"
        data.mkdir()
        staged, checked, databases = stage_checked(store, manifest, item, identities, data, force)
        with load(data, staged, databases, server) as drilled:
            plan = drill.keyspace(drilled.client())
            result = ServerRestoreResult(manifest.id, target.display_url, plan, dry_run)
            if dry_run:
                return dataclasses.replace(
                    result, target_keys=existing, warnings=warnings + checked
                )
            limits = check_target(target, drilled, plan)
            copied = copy_into(target, drilled, plan, replace, limits)
    except redis.RedisError as error:
        raise explain_failure(error, target, "RESTORE") from None
    finally:
        drill.remove(workdir)
    return dataclasses.replace(
        result,
        restored=copied.keys,
        skipped_expired=copied.skipped_expired,
        warnings=warnings + checked + limits.warnings,
    )


def stage_checked(
    store: Store,
    manifest: Manifest,
    item: StoredObject,
    identities: list,
    data: Path,
    force: bool,
) -> tuple[Staged, tuple[str, ...], int]:
    """Download, decrypt and unpack `item` into `data`; refuse an RDB whose keys per db differ
    from its manifest's (a warning with `force`). Also returns how many databases a drill
    server needs for it (the RDB is walked once, here)."""
    staged = stage(store, manifest, item, identities, data)
    snapshot = read_snapshot(staged.path) if staged.rdb is not None else None
    warnings = _check_counts(snapshot, manifest, force) if snapshot is not None else ()
    return staged, warnings, databases_for(manifest, snapshot)


def load(
    data: Path, staged: Staged, databases: int, server: drill.ServerBinary
) -> contextlib.AbstractContextManager[drill.Drill]:
    """A drill server holding the staged backup (stopped when the block ends)."""
    return drill.scratch_server(data, staged.aof_dirname, databases, server)


def check_target(target: Target, drilled: drill.Drill, plan: dict[str, dict]) -> ClientLimits:
    """Check, writing nothing but a scratch key, that `target` can take what `drilled` holds
    (restore_preflight). A connection the target closes is reported as such (evicted, or
    closed), never as a TLS failure."""
    with session(target) as client:
        evicted_before = _evicted_clients(client)
        try:
            return preflight(client, target, drilled, plan)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            lost = ConnectionLost(0, 0, error, "while checking the target")
            raise _explain_lost(lost, target, evicted_before) from None


def copy_into(
    target: Target,
    drilled: drill.Drill,
    plan: dict[str, dict],
    replace: bool,
    limits: ClientLimits,
) -> TransferCount:
    """Copy every key of `drilled` into `target`, TTLs kept (check_target first)."""
    with session(target) as client:
        evicted_before = _evicted_clients(client)
    try:
        return copy_keys(
            drilled.client,
            _target_factory(target, limits.no_evict),
            [int(db[2:]) for db in plan],
            replace,
        )
    except ConnectionLost as lost:
        raise _explain_lost(lost, target, evicted_before) from None


def _evicted_clients(client: redis.Redis) -> int | None:
    try:
        return int(client.info("stats").get("evicted_clients", 0))
    except redis.RedisError:
        return None


def _explain_lost(lost: ConnectionLost, target: Target, evicted_before: int | None) -> RedkeepError:
    """Why the target closed the restoring connection: evicted, or closed (never 'TLS')."""
    reason = "the server closed the connection"
    if isinstance(lost.cause, redis.TimeoutError):
        reason = "the server stopped answering"
    try:
        with session(target) as client:
            after = _evicted_clients(client)
        if evicted_before is not None and after is not None and after > evicted_before:
            reason = (
                "the server evicted this client (INFO evicted_clients rose): its "
                "maxmemory-clients is too small for the keys being restored; raise it, or "
                "restore as a user allowed CLIENT NO-EVICT"
            )
    except RedkeepError:
        reason += " and cannot be reached now"
    return RedkeepError(
        f"restore into {target.where} broke off {lost.during}: {reason}; {lost.partial}"
    )


def target_keyspace(target: Target) -> dict[str, dict[str, int]]:
    with session(target) as client:
        try:
            return drill.keyspace(client)
        except redis.RedisError as error:
            raise explain_failure(error, target, "INFO keyspace") from None


def _target_factory(target: Target, no_evict: bool) -> Callable[[int], redis.Redis]:
    def connect(db: int) -> redis.Redis:
        client = client_for(dataclasses.replace(target, db=db), decode_responses=False)
        if no_evict:  # the pool keeps this one connection: copy_keys uses it sequentially
            client.execute_command("CLIENT", "NO-EVICT", "on")
        return client

    return connect
