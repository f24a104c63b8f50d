"""`redkeep backup verify` and `backup restore`.

verify: download each object, check its SHA-256, decrypt, decompress, check the RDB's CRC64
(and `redis-check-rdb` when installed), then a restore drill: load it into a throw-away
redis-server and compare keys and expires per database with what the manifest recorded.
restore: to a file (the RDB, or the AOF directory), or into a live server through the drill
server and DUMP/RESTORE, TTLs kept.
"""

import datetime as dt
import itertools
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import redis

from redkeep.actions.backup import Listed
from redkeep.backup import drill
from redkeep.backup.encryption import KEY_OBJECT, unwrap_key
from redkeep.backup.fetch import fetch_object
from redkeep.backup.manifest import VERIFIED, Manifest, StoredObject, object_key
from redkeep.backup.rdb import RdbValidator
from redkeep.backup.stores import Store
from redkeep.backup.transfer import copy_keys
from redkeep.errors import DamagedBackup, RedkeepError, UsageError
from redkeep.redis.client import client_for, explain_failure, session
from redkeep.redis.target import Target

SAMPLE = 100
SAMPLE_MAX_BYTES = 16 << 20
AOF_DIRNAME = "appendonlydir"


@dataclass
class Keys:
    """How to open a backup: identities, and a passphrase for backups with a key.age."""

    identities: list
    passphrase: str | None = None

    def for_backup(self, store: Store, manifest: Manifest) -> list:
        identities = list(self.identities)
        key_object = manifest.encryption.get("key_object")
        if key_object and self.passphrase:
            data = store.get_bytes(object_key(manifest.source, manifest.id, KEY_OBJECT))
            identities.append(unwrap_key(data, self.passphrase))
        if manifest.encryption.get("mode", "none") != "none" and not identities:
            how = "--age-identity" + (" or --passphrase-file" if key_object else "")
            raise UsageError(f"backup {manifest.id} is encrypted: pass {how} to open it")
        return identities


def _download(
    store: Store, manifest: Manifest, item: StoredObject, identities: list, path: Path
) -> dict[str, Any]:
    """Fetch one object into `path`; for an RDB, return its check."""
    validator = RdbValidator() if item.content == "rdb" else None
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
        fetch_object(
            store,
            object_key(manifest.source, manifest.id, item.name),
            item,
            identities,
            out,
            validator,
            where=str(path.parent),
        )
    return validator.finish().as_dict() if validator else {}


def _extract_aof(tar_path: Path, into: Path) -> Path:
    """Unpack the AOF tar into `into`; only plain files under appendonlydir/ are accepted."""
    with tarfile.open(tar_path, "r:") as tar:
        tar.extractall(into, filter="data")
    directory = into / AOF_DIRNAME
    if not directory.is_dir():
        raise RedkeepError(f"{tar_path.name}: no {AOF_DIRNAME}/ inside")
    return directory


# --- verify -------------------------------------------------------------------------------


def verify_backup(store: Store, listed: Listed, keys: Keys, now: dt.datetime) -> dict[str, Any]:
    """Check every object of a backup and drill-restore it; record the verdict in verify.json.

    Only a verdict about the data is recorded: damage fails the backup, while a wrong key or a
    local problem (no suitable redis-server) raises without touching an earlier verdict.
    """
    manifest = listed.manifest
    assert manifest is not None
    identities = keys.for_backup(store, manifest)
    result: dict[str, Any] = {"id": manifest.id, "source": manifest.source, "objects": {}}
    workdir = drill.scratch_dir()
    try:
        for item in manifest.objects:
            result["objects"][item.name] = _verify_object(
                store, manifest, item, identities, workdir / item.content
            )
        result["result"] = "ok"
    except DamagedBackup as error:
        result["result"] = "failed"
        result["error"] = error.message
    finally:
        drill.remove(workdir)
    result["verified_at"] = now.isoformat()
    store.put_bytes(
        object_key(manifest.source, manifest.id, VERIFIED), json.dumps(result, indent=2).encode()
    )
    return result


def _verify_object(
    store: Store, manifest: Manifest, item: StoredObject, identities: list, workdir: Path
) -> dict[str, Any]:
    workdir.mkdir(parents=True)
    checks: dict[str, Any] = {"sha256": "ok"}
    if item.content == "rdb":
        checks["rdb"] = _download(store, manifest, item, identities, workdir / "dump.rdb")
        checks["redis_check_rdb"] = _redis_check_rdb(workdir / "dump.rdb")
        aof_dirname = None
    else:
        tar_path = workdir.parent / f"{item.content}.tar"
        _download(store, manifest, item, identities, tar_path)
        _extract_aof(tar_path, workdir)
        tar_path.unlink()
        aof_dirname = AOF_DIRNAME
    with drill.scratch_server(workdir, aof_dirname, databases_for(manifest)) as server:
        checks["drill"] = compare_keyspace(server, manifest)
    return checks


def databases_for(manifest: Manifest) -> int:
    """Databases the drill server needs: every db the source used, plus one spare for checks."""
    used = [
        int(db[2:]) for window in manifest.keyspace.values() for db in window if db[2:].isdigit()
    ]
    return max(16, max(used, default=0) + 2)


def _redis_check_rdb(path: Path) -> str:
    binary = shutil.which("redis-check-rdb")
    if binary is None:
        return "not installed"
    result = subprocess.run(
        [binary, str(path)], capture_output=True, text=True, check=False, timeout=3600
    )
    if result.returncode != 0 or "RDB looks OK" not in result.stdout:
        lines = [line for line in result.stdout.splitlines() if "---" not in line and line.strip()]
        raise DamagedBackup(f"redis-check-rdb rejects the RDB: {lines[-1] if lines else 'error'}")
    return "ok"


def compare_keyspace(server: drill.Drill, manifest: Manifest) -> dict[str, Any]:
    """Keys and expires per db in the drill server against the manifest's capture window.

    The snapshot was taken between the "before" and "after" INFO readings, so each count must
    lie between them, less the keys that expired since (dropped while loading, or after).
    """
    client = server.client()
    loaded = drill.keyspace(client)
    info = client.info("all")
    client.close()
    expired = int(info.get("rdb_last_load_keys_expired", 0)) + int(info.get("expired_keys", 0))
    before = manifest.keyspace.get("before", {})
    after = manifest.keyspace.get("after", before)
    problems = []
    for db in sorted(set(before) | set(after) | set(loaded)):
        for field in ("keys", "expires"):
            low, high = sorted((before.get(db, {}).get(field, 0), after.get(db, {}).get(field, 0)))
            found = loaded.get(db, {}).get(field, 0)
            if not low - expired <= found <= high:
                problems.append(f"{db} {field}: {found} loaded, {low}..{high} expected")
    if problems:
        raise DamagedBackup("restore drill: the loaded data differs: " + "; ".join(problems))
    return {
        "keyspace": loaded,
        "expired_since_capture": expired,
        "sampled_keys": _sample_round_trip(server, loaded, databases_for(manifest) - 1),
    }


def _sample_round_trip(server: drill.Drill, loaded: dict[str, dict[str, int]], spare: int) -> int:
    """DUMP up to SAMPLE keys of each db, RESTORE them into the spare db, compare the values.

    This is the path `restore --to-url` takes, tried on real keys of this backup. DUMP
    payloads cannot be compared: a hash table's payload follows its internal order, which a
    RESTORE does not keep. The value's digest (DEBUG DIGEST-VALUE, order-independent) can.
    """
    scratch = server.client(spare)
    checked = 0
    try:
        for db in loaded:
            client = server.client(int(db[2:]))
            for key in itertools.islice(client.scan_iter(count=SAMPLE), SAMPLE):
                if (client.memory_usage(key) or 0) > SAMPLE_MAX_BYTES:
                    continue  # the keyspace check covers it; a copy would cost its size twice
                if not copy_one(client, scratch, key):
                    continue  # expired while we looked
                problem = round_trip_problem(client, scratch, key)
                if problem:
                    raise DamagedBackup(
                        f"key {key!r} of {db} does not survive DUMP/RESTORE: {problem}"
                    )
                checked += 1
            client.close()
            scratch.flushdb()
    finally:
        scratch.close()
    return checked


def copy_one(source: redis.Redis, target: redis.Redis, key: bytes) -> bool:
    """DUMP `key` from `source` and RESTORE it into `target`, TTL kept; False if it expired."""
    payload, pttl = source.dump(key), source.pttl(key)
    if payload is None or pttl == -2:
        return False
    target.restore(key, max(pttl, 0), payload, replace=True)
    return True


def round_trip_problem(source: redis.Redis, copy: redis.Redis, key: bytes) -> str | None:
    """What differs between `key` in `source` and its copy (None when they are the same).

    Both connections must reach one server started with `enable-debug-command local` (the
    drill server): DEBUG DIGEST-VALUE covers type, value and whether a TTL is set, but not a
    stream's consumer groups, which are compared separately.
    """
    if (source.pttl(key) == -1) != (copy.pttl(key) == -1):
        return "its TTL was not kept"
    if _digest(source, key) != _digest(copy, key):
        return "its value differs after the round trip"
    if source.type(key) == b"stream" and _groups(source, key) != _groups(copy, key):
        return "its consumer groups differ after the round trip"
    return None


def _digest(client: redis.Redis, key: bytes) -> bytes:
    return client.execute_command("DEBUG", "DIGEST-VALUE", key)[0]


def _groups(client: redis.Redis, key: bytes) -> list:
    return client.execute_command("XINFO", "GROUPS", key)


# --- restore ------------------------------------------------------------------------------


def restore_to_file(
    store: Store,
    listed: Listed,
    keys: Keys,
    path: Path,
    content: str,
    replace: bool,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Write the backup's RDB file (or AOF directory) to `path`; nothing there on failure."""
    manifest = listed.manifest
    assert manifest is not None
    item = _object(manifest, content)
    _check_destination(path, item, replace)
    result = {"id": manifest.id, "to": str(path), "content": item.content, "bytes": item.raw_size}
    if dry_run:
        return result | {"dry_run": True}
    identities = keys.for_backup(store, manifest)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".redkeep-restore-", dir=path.parent))
    try:
        if item.content == "rdb":
            result["rdb"] = _download(store, manifest, item, identities, staging / "dump.rdb")
            staged = staging / "dump.rdb"
        else:
            _download(store, manifest, item, identities, staging / "aof.tar")
            staged = _extract_aof(staging / "aof.tar", staging / "out")
        _swap_into_place(staged, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


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


def _object(manifest: Manifest, content: str) -> StoredObject:
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
    keys: Keys,
    target: Target,
    content: str,
    replace: bool,
    dry_run: bool,
) -> dict[str, Any]:
    """Load the backup in a drill server, then copy every key into `target` (TTLs kept).

    Refuses a target that has keys unless `replace`, and checks before writing anything that
    the target has the databases, the memory and the RDB version the backup needs. With
    `dry_run` only reports the plan.
    """
    manifest = listed.manifest
    assert manifest is not None
    item = _object(manifest, content)
    identities = keys.for_backup(store, manifest)
    existing = _target_keyspace(target)
    if existing and not replace:
        counts = ", ".join(f"{db}: {v['keys']} keys" for db, v in existing.items())
        raise UsageError(
            f"{target.where} is not empty ({counts}); pass --replace to overwrite keys that "
            "exist in the backup (others are left alone)"
        )
    workdir = drill.scratch_dir()
    try:
        (workdir / "data").mkdir()
        aof_dirname = None
        if item.content == "rdb":
            _download(store, manifest, item, identities, workdir / "data" / "dump.rdb")
        else:
            _download(store, manifest, item, identities, workdir / "aof.tar")
            _extract_aof(workdir / "aof.tar", workdir / "data")
            aof_dirname = AOF_DIRNAME
        with drill.scratch_server(workdir / "data", aof_dirname, databases_for(manifest)) as server:
            plan = drill.keyspace(server.client())
            result = {"id": manifest.id, "to": target.display_url, "plan": plan, "dry_run": dry_run}
            if dry_run:
                result["target_keys"] = existing
                return result
            with session(target) as client:
                preflight(client, target, server, plan)
            copied = copy_keys(
                server.client,
                _target_factory(target),
                [int(db[2:]) for db in plan],
                replace,
            )
    except redis.RedisError as error:
        raise explain_failure(error, target, "RESTORE") from None
    finally:
        drill.remove(workdir)
    result["restored"] = copied.keys
    result["skipped_expired"] = copied.skipped_expired
    return result


def preflight(
    client: redis.Redis, target: Target, server: drill.Drill, plan: dict[str, dict]
) -> None:
    """Refuse, before any write, a target that cannot hold the backup."""
    highest = max((int(db[2:]) for db in plan), default=0)
    try:
        databases = int(client.config_get("databases").get("databases", 0))
    except redis.RedisError:
        databases = 0  # CONFIG GET not allowed: RESTORE will tell
    if databases and highest >= databases:
        raise UsageError(
            f"{target.where} has {databases} databases, but the backup uses db{highest}; "
            f"raise `databases` there first"
        )
    needed = int(server.client().info("memory")["used_memory"])
    memory = client.info("memory")
    limit = int(memory.get("maxmemory", 0))
    if limit and int(memory.get("used_memory", 0)) + needed > limit:
        raise UsageError(
            f"{target.where} has maxmemory {limit >> 20} MiB; the backup needs about "
            f"{needed >> 20} MiB more than is in use: raise maxmemory first"
        )
    _probe_restore(client, target, server, plan)


def _probe_restore(
    client: redis.Redis, target: Target, server: drill.Drill, plan: dict[str, dict]
) -> None:
    """RESTORE one real payload under a scratch name: the target can read this RDB version."""
    if not plan:
        return
    source = server.client(int(next(iter(plan))[2:]))
    key = next(iter(source.scan_iter(count=10)), None)
    payload = source.dump(key) if key is not None else None
    source.close()
    if payload is None:
        return
    probe = f"redkeep:restore-probe:{os.getpid()}"
    try:
        client.restore(probe, 60_000, payload, replace=True)
    except redis.ResponseError as error:
        raise RedkeepError(
            f"{target.where} cannot load this backup's data ({str(error).splitlines()[0]}); "
            "it needs a Redis at least as new as the one that made the backup"
        ) from None
    finally:
        client.delete(probe)


def _target_keyspace(target: Target) -> dict[str, dict[str, int]]:
    with session(target) as client:
        try:
            return drill.keyspace(client)
        except redis.RedisError as error:
            raise explain_failure(error, target, "INFO keyspace") from None


def _target_factory(target: Target) -> Callable[[int], redis.Redis]:
    return lambda db: client_for(replace(target, db=db), decode_responses=False)
