"""`redkeep backup verify` and `backup restore`.

verify: download each object, check its SHA-256, decrypt, decompress, check the RDB's CRC64
(and `redis-check-rdb` when installed), then a restore drill: load it into a throw-away
redis-server and compare keys and expires per database with what the manifest recorded.
restore: to a file (the RDB, or the AOF directory), or into a live server through the drill
server and DUMP/RESTORE, TTLs kept.
"""

import datetime as dt
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
from redkeep.connect import client_for, explain_command_error, session
from redkeep.endpoint import Target
from redkeep.errors import RedkeepError, UsageError

SAMPLE = 100
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
    """Check every object of a backup and drill-restore it; record the result in verify.json."""
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
    except RedkeepError as error:
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
    with drill.scratch_server(workdir, aof_dirname) as server:
        checks["drill"] = compare_keyspace(server, manifest)
    return checks


def _redis_check_rdb(path: Path) -> str:
    binary = shutil.which("redis-check-rdb")
    if binary is None:
        return "not installed"
    result = subprocess.run(
        [binary, str(path)], capture_output=True, text=True, check=False, timeout=3600
    )
    if result.returncode != 0 or "RDB looks OK" not in result.stdout:
        lines = [line for line in result.stdout.splitlines() if "---" not in line and line.strip()]
        raise RedkeepError(f"redis-check-rdb rejects the RDB: {lines[-1] if lines else 'error'}")
    return "ok"


def compare_keyspace(server: drill.Drill, manifest: Manifest) -> dict[str, Any]:
    """Keys and expires per db in the drill server against the manifest's capture window.

    The snapshot was taken between the "before" and "after" INFO readings, so each count must
    lie between them; keys that expired before loading are allowed for.
    """
    client = server.client()
    loaded = drill.keyspace(client)
    expired_on_load = int(client.info("persistence").get("rdb_last_load_expired_keys", 0) or 0)
    client.close()
    before = manifest.keyspace.get("before", {})
    after = manifest.keyspace.get("after", before)
    problems = []
    for db in sorted(set(before) | set(after) | set(loaded)):
        for field in ("keys", "expires"):
            low, high = sorted((before.get(db, {}).get(field, 0), after.get(db, {}).get(field, 0)))
            found = loaded.get(db, {}).get(field, 0)
            if not low - expired_on_load <= found <= high:
                problems.append(f"{db} {field}: {found} loaded, {low}..{high} expected")
    if problems:
        raise RedkeepError("restore drill: the loaded data differs: " + "; ".join(problems))
    return {
        "keyspace": loaded,
        "expired_on_load": expired_on_load,
        "sampled_keys": _sample(server, loaded),
    }


def _sample(server: drill.Drill, loaded: dict[str, dict[str, int]]) -> int:
    """DUMP and PTTL a sample of keys of each db: each must serialize and have a TTL state."""
    checked = 0
    for db in loaded:
        client = server.client(int(db[2:]))
        _, keys = client.scan(cursor=0, count=SAMPLE)
        for key in keys[:SAMPLE]:
            if client.dump(key) is not None and client.pttl(key) != -2:
                checked += 1  # (a key that expired while we looked is skipped)
        client.close()
    return checked


# --- restore ------------------------------------------------------------------------------


def restore_to_file(
    store: Store, listed: Listed, keys: Keys, path: Path, content: str, replace: bool
) -> dict[str, Any]:
    """Write the backup's RDB file (or AOF directory) to `path`; nothing there on failure."""
    manifest = listed.manifest
    assert manifest is not None
    item = _object(manifest, content)
    if path.exists() and not replace:
        raise UsageError(f"{path} exists; pass --replace to overwrite it")
    identities = keys.for_backup(store, manifest)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".redkeep-restore-", dir=path.parent))
    try:
        if item.content == "rdb":
            check = _download(store, manifest, item, identities, staging / "dump.rdb")
            staged = staging / "dump.rdb"
        else:
            _download(store, manifest, item, identities, staging / "aof.tar")
            staged = _extract_aof(staging / "aof.tar", staging / "out")
            check = {}
        if path.is_dir() and replace:
            shutil.rmtree(path)
        os.replace(staged, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"id": manifest.id, "to": str(path), "content": item.content, "rdb": check}


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

    Refuses a target that has keys unless `replace`; with `dry_run` only reports the plan.
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
        with drill.scratch_server(workdir / "data", aof_dirname) as server:
            plan = drill.keyspace(server.client())
            result = {"id": manifest.id, "to": target.display_url, "plan": plan, "dry_run": dry_run}
            if dry_run:
                result["target_keys"] = existing
                return result
            copied = copy_keys(
                server.client,
                _target_factory(target),
                [int(db[2:]) for db in plan],
                replace,
            )
    except redis.RedisError as error:
        raise explain_command_error(error, target, "RESTORE") from None
    finally:
        drill.remove(workdir)
    result["restored"] = copied.keys
    result["skipped_expired"] = copied.skipped_expired
    return result


def _target_keyspace(target: Target) -> dict[str, dict[str, int]]:
    with session(target) as client:
        try:
            return drill.keyspace(client)
        except redis.RedisError as error:
            raise explain_command_error(error, target, "INFO keyspace") from None


def _target_factory(target: Target) -> Callable[[int], redis.Redis]:
    return lambda db: client_for(replace(target, db=db), decode_responses=False)
