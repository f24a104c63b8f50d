"""`redkeep backup verify` and `backup restore`.

verify: check that the drill server reads the backup's RDB format (else "cannot verify here"),
download each object, check its SHA-256, decrypt, decompress, check the RDB's CRC64 and run the
drill server's RDB checker, then a restore drill: load it into a throw-away server and compare
keys and expires per database with what the snapshot holds.
restore: to a file (the RDB, or the AOF directory), or into a live server through the drill
server and DUMP/RESTORE, TTLs kept; refused when the last verify failed or the RDB does not hold
what its manifest recorded (unless --force), and checked against the target's version and client
limits before anything is written.
"""

import datetime as dt
import itertools
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import redis

from redkeep.actions.backup import Listed
from redkeep.backup import drill, rdbkeys
from redkeep.backup.encryption import KEY_OBJECT, unwrap_key
from redkeep.backup.fetch import OutputError, OutputSink, fetch_object
from redkeep.backup.manifest import VERIFIED, Manifest, StoredObject, object_key
from redkeep.backup.rdb import RdbValidator, crc64
from redkeep.backup.stores import Store
from redkeep.backup.transfer import ConnectionLost, TransferCount, copy_keys
from redkeep.errors import DamagedBackup, RedkeepError, StoreError, UsageError
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
    return validator.finish().as_dict() if validator else {}


def _create_private(path: Path):
    try:
        return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")
    except OSError as error:
        raise OutputError(
            f"cannot create {path}: {error.strerror}; free space there (or point TMPDIR "
            "elsewhere for verify) and try again"
        ) from None


def _extract_aof(tar_path: Path, into: Path) -> Path:
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


def _describe(manifest: Manifest) -> str:
    """`backup ID (made by redis 7.0.15)`, as far as the manifest says."""
    made_by = " ".join(str(manifest.server.get(k) or "") for k in ("engine", "version")).strip()
    return f"backup {manifest.id}" + (f" (made by {made_by})" if made_by else "")


def _require_readable(server: drill.ServerBinary, manifest: Manifest, doing: str) -> None:
    """Before anything is downloaded: the drill server can read this backup's RDB format."""
    engine, version = manifest.rdb.get("engine"), manifest.rdb.get("version")
    rdb = manifest.object("rdb") is not None and engine in ("redis", "valkey")
    if rdb and isinstance(version, int):
        drill.require_readable(server, engine, version, _describe(manifest), doing)


def _snapshot_counts_problem(path: Path, manifest: Manifest) -> str | None:
    """The RDB at `path` against the keys and expires per db its manifest recorded; None when
    they agree, or when the manifest recorded none (a backup from an older redkeep)."""
    recorded = manifest.rdb.get("keyspace")
    if recorded is None:
        return None
    try:
        with path.open("rb") as stream:
            found = rdbkeys.walk(stream)
    except rdbkeys.Unknown as error:
        return f"its keys cannot be counted ({error})"
    differences = [
        f"{db} {name}: {found.get(db, {}).get(name, 0)} in the file, "
        f"{recorded.get(db, {}).get(name, 0)} in the manifest"
        for db in sorted(set(found) | set(recorded))
        for name in ("keys", "expires")
        if found.get(db, {}).get(name, 0) != recorded.get(db, {}).get(name, 0)
    ]
    return "; ".join(differences) or None


# --- verify -------------------------------------------------------------------------------


def verify_backup(
    store: Store, listed: Listed, keys: Keys, now: dt.datetime, server: drill.ServerBinary
) -> dict[str, Any]:
    """Check every object of a backup and drill-restore it in `server`; record the verdict in
    verify.json.

    Only a verdict about the data is recorded: damage fails the backup, while a wrong key or a
    local problem (a drill server too old for the backup: CannotCheckHere) raises without
    touching an earlier verdict. When the verdict cannot be stored (a read-only store), the
    result says so in `record_error`: the verdict is still returned, to be shown.
    """
    manifest = listed.manifest
    assert manifest is not None
    identities = keys.for_backup(store, manifest)
    _require_readable(server, manifest, "verify")
    result: dict[str, Any] = {"id": manifest.id, "source": manifest.source, "objects": {}}
    result["drill_server"] = f"{server.flavour} {server.version}"
    workdir = drill.scratch_dir()
    try:
        for item in manifest.objects:
            result["objects"][item.name] = _verify_object(
                store, manifest, item, identities, workdir / item.content, server
            )
        result["result"] = "ok"
    except DamagedBackup as error:
        result["result"] = "failed"
        result["error"] = error.message
    finally:
        drill.remove(workdir)
    result["verified_at"] = now.isoformat()
    try:
        store.put_bytes(
            object_key(manifest.source, manifest.id, VERIFIED),
            json.dumps(result, indent=2).encode(),
        )
    except (RedkeepError, OSError) as error:
        message = error.message if isinstance(error, RedkeepError) else error.strerror
        result["record_error"] = f"the verdict could not be stored as {VERIFIED}: {message}"
    return result


def _verify_object(
    store: Store,
    manifest: Manifest,
    item: StoredObject,
    identities: list,
    workdir: Path,
    server: drill.ServerBinary,
) -> dict[str, Any]:
    try:
        workdir.mkdir(parents=True)
    except OSError as error:
        raise OutputError(f"cannot create {workdir}: {error.strerror}") from None
    checks: dict[str, Any] = {"sha256": "ok"}
    if item.content == "rdb":
        checks["rdb"] = _download(store, manifest, item, identities, workdir / "dump.rdb")
        checks["redis_check_rdb"] = _check_rdb(server, workdir / "dump.rdb")
        aof_dirname = None
    else:
        tar_path = workdir.parent / f"{item.content}.tar"
        _download(store, manifest, item, identities, tar_path)
        _extract_aof(tar_path, workdir)
        tar_path.unlink()
        aof_dirname = AOF_DIRNAME
    with drill.scratch_server(workdir, aof_dirname, databases_for(manifest), server) as drilled:
        checks["drill"] = compare_keyspace(drilled, manifest, item.content)
    return checks


def _check_rdb(server: drill.ServerBinary, path: Path) -> str:
    """The drill server's own RDB checker on the file; its reason when it refuses."""
    readable, reason = drill.check_rdb(server, path)
    if readable:
        return "ok"
    if any(refusal in reason for refusal in drill.VERSION_REFUSALS):
        raise drill.CannotCheckHere(
            f"cannot verify here: the RDB checker of {server.name} cannot read this backup's "
            f"format ({reason}); pass --server-binary PATH to a newer redis-server or "
            "valkey-server"
        )
    raise DamagedBackup(f"the RDB checker of {server.name} rejects the RDB: {reason}")


def databases_for(manifest: Manifest) -> int:
    """Databases the drill server needs: every db the source used, plus one spare for checks."""
    windows = [*manifest.keyspace.values(), manifest.rdb.get("keyspace", {})]
    used = [int(db[2:]) for window in windows for db in window if db[2:].isdigit()]
    return max(16, max(used, default=0) + 2)


def compare_keyspace(
    server: drill.Drill, manifest: Manifest, content: str = "rdb"
) -> dict[str, Any]:
    """Keys and expires per db in the drill server against what the backup should hold.

    An RDB backup records what its snapshot holds (counted while it streamed): each count must
    be that, less the keys that expired since (dropped while loading, or after). Without that
    record (an AOF, an older backup) each count must lie between the INFO readings taken
    before and after the capture, less the expired keys: a bound that holds only while no
    keys come and go during the capture.
    """
    client = server.client()
    loaded = drill.keyspace(client)
    info = client.info("all")
    client.close()
    expired = int(info.get("rdb_last_load_keys_expired", 0)) + int(info.get("expired_keys", 0))
    snapshot = manifest.rdb.get("keyspace") if content == "rdb" else None
    if snapshot is not None:
        if "rdb_last_load_keys_expired" not in info:  # Redis 6.2 does not count them
            expired += sum(sizes["expires"] for sizes in snapshot.values())
        low_window = high_window = snapshot
    else:
        low_window = manifest.keyspace.get("before", {})
        high_window = manifest.keyspace.get("after", low_window)
    problems = []
    for db in sorted(set(low_window) | set(high_window) | set(loaded)):
        for field in ("keys", "expires"):
            low, high = sorted(
                (low_window.get(db, {}).get(field, 0), high_window.get(db, {}).get(field, 0))
            )
            found = loaded.get(db, {}).get(field, 0)
            if not low - expired <= found <= high:
                expected = f"{high}" if low == high else f"{low}..{high}"
                problems.append(f"{db} {field}: {found} loaded, {expected} expected")
    if problems:
        source = "the snapshot holds" if snapshot is not None else "the server held"
        raise DamagedBackup(
            f"restore drill: the loaded data differs from what {source}: "
            + "; ".join(problems)
            + (f" (less up to {expired} expired keys)" if expired else "")
        )
    return {
        "keyspace": loaded,
        "expected_from": "snapshot" if snapshot is not None else "server INFO",
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
    force: bool = False,
) -> dict[str, Any]:
    """Write the backup's RDB file (or AOF directory) to `path`; nothing there on failure."""
    manifest = listed.manifest
    assert manifest is not None
    item = _object(manifest, content)
    _check_destination(path, item, replace)
    result = {"id": manifest.id, "to": str(path), "content": item.content, "bytes": item.raw_size}
    result["warnings"] = _refuse_failed_verdict(store, manifest, force)
    if dry_run:
        return result | {"dry_run": True}
    identities = keys.for_backup(store, manifest)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".redkeep-restore-", dir=path.parent))
    try:
        if item.content == "rdb":
            result["rdb"] = _download(store, manifest, item, identities, staging / "dump.rdb")
            staged = staging / "dump.rdb"
            result["warnings"] += _check_counts(staged, manifest, force)
        else:
            _download(store, manifest, item, identities, staging / "aof.tar")
            staged = _extract_aof(staging / "aof.tar", staging / "out")
        _swap_into_place(staged, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


def _refuse_failed_verdict(store: Store, manifest: Manifest, force: bool) -> list[str]:
    """Refuse a backup whose last `verify` failed (a warning with `force`)."""
    try:
        record = json.loads(store.get_bytes(object_key(manifest.source, manifest.id, VERIFIED)))
    except (StoreError, ValueError):
        return []  # never verified (or the record is unreadable): nothing to go by
    if not isinstance(record, dict) or record.get("result") != "failed":
        return []
    why = f"backup {manifest.id} FAILED verification"
    why += f" on {record.get('verified_at', '?')[:19]}: {record.get('error', '?')}"
    if not force:
        raise DamagedBackup(f"{why}; restore another backup, or pass --force to restore it anyway")
    return [f"{why}; restoring it anyway (--force)"]


def _check_counts(path: Path, manifest: Manifest, force: bool) -> list[str]:
    """Refuse an RDB whose keys per db differ from its manifest's (a warning with `force`)."""
    problem = _snapshot_counts_problem(path, manifest)
    if problem is None:
        return []
    why = f"backup {manifest.id} does not hold the keys its manifest recorded: {problem}"
    if not force:
        raise DamagedBackup(f"{why}; restore another backup, or pass --force to restore it anyway")
    return [f"{why}; restoring it anyway (--force)"]


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
    server: drill.ServerBinary,
    force: bool = False,
) -> dict[str, Any]:
    """Load the backup in a drill server, then copy every key into `target` (TTLs kept).

    Refuses a target that has keys unless `replace`, and checks before writing anything that
    the target has the databases, the memory, the client limits and the RDB version the backup
    needs. With `dry_run` only reports the plan.
    """
    manifest = listed.manifest
    assert manifest is not None
    item = _object(manifest, content)
    warnings = _refuse_failed_verdict(store, manifest, force)
    identities = keys.for_backup(store, manifest)
    existing = _target_keyspace(target)
    if existing and not replace:
        counts = ", ".join(f"{db}: {v['keys']} keys" for db, v in existing.items())
        raise UsageError(
            f"{target.where} is not empty ({counts}); pass --replace to overwrite keys that "
            "exist in the backup (others are left alone)"
        )
    if not dry_run:
        with session(target) as client:
            _require_target_reads(client, target, manifest)
    _require_readable(server, manifest, "restore")
    workdir = drill.scratch_dir()
    try:
        data = workdir / "data"
        data.mkdir()
        aof_dirname = None
        if item.content == "rdb":
            _download(store, manifest, item, identities, data / "dump.rdb")
            warnings += _check_counts(data / "dump.rdb", manifest, force)
        else:
            _download(store, manifest, item, identities, workdir / "aof.tar")
            _extract_aof(workdir / "aof.tar", data)
            aof_dirname = AOF_DIRNAME
        with drill.scratch_server(data, aof_dirname, databases_for(manifest), server) as drilled:
            plan = drill.keyspace(drilled.client())
            result = {"id": manifest.id, "to": target.display_url, "plan": plan, "dry_run": dry_run}
            if dry_run:
                return result | {"target_keys": existing, "warnings": warnings}
            copied = _copy_into(target, drilled, plan, replace, warnings)
    except redis.RedisError as error:
        raise explain_failure(error, target, "RESTORE") from None
    finally:
        drill.remove(workdir)
    result["restored"] = copied.keys
    result["skipped_expired"] = copied.skipped_expired
    result["warnings"] = warnings
    return result


def _copy_into(
    target: Target, drilled: drill.Drill, plan: dict[str, dict], replace: bool, warnings: list
) -> TransferCount:
    """Check the target can take the backup, then copy every key; a connection the target
    closes midway is reported as such (evicted, or closed), never as a TLS failure."""
    with session(target) as client:
        evicted_before = _evicted_clients(client)
        try:
            limits = preflight(client, target, drilled, plan)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            lost = ConnectionLost(0, 0, error, "while checking the target")
            raise _explain_lost(lost, target, evicted_before) from None
    warnings += limits.warnings
    try:
        return copy_keys(
            drilled.client,
            _target_factory(target, limits.no_evict),
            [int(db[2:]) for db in plan],
            replace,
        )
    except ConnectionLost as lost:
        raise _explain_lost(lost, target, evicted_before) from None


# A string value "redkeep" serialized as in DUMP: type 0, then the string, before the footer.
_PROBE_VALUE = b"\x00\x07redkeep"


def probe_payload(rdb_version: int) -> bytes:
    """A DUMP payload of a short string in RDB format `rdb_version` (footer: version, CRC64)."""
    body = _PROBE_VALUE + rdb_version.to_bytes(2, "little")
    return body + crc64(body).to_bytes(8, "little")


def _require_target_reads(client: redis.Redis, target: Target, manifest: Manifest) -> None:
    """Refuse, before anything is downloaded, a target older than the backup's RDB version:
    RESTORE of a tiny payload in that version, under a scratch name, then deleted."""
    version = manifest.rdb.get("version")
    if manifest.object("rdb") is None or not isinstance(version, int):
        return
    probe = f"redkeep:restore-probe:{os.getpid()}"
    try:
        client.restore(probe, 60_000, probe_payload(version), replace=True)
    except redis.ResponseError as error:
        if "payload version" not in str(error):
            raise
        info = client.info("server")
        flavour = "Valkey" if info.get("server_name") == "valkey" else "Redis"
        running = info.get("valkey_version") or info.get("redis_version")
        raise RedkeepError(
            f"{target.where} runs {flavour} {running}, which cannot load RDB version {version} "
            f"of {_describe(manifest)}: restore into a server at least as new as the one "
            "that made the backup"
        ) from None
    finally:
        client.delete(probe)


@dataclass
class ClientLimits:
    no_evict: bool  # CLIENT NO-EVICT on is allowed: maxmemory-clients cannot evict the restore
    warnings: list[str]


def preflight(
    client: redis.Redis, target: Target, server: drill.Drill, plan: dict[str, dict]
) -> ClientLimits:
    """Refuse, before any write, a target that cannot hold the backup."""
    config = _config(
        client,
        "databases",
        "maxmemory-clients",
        "proto-max-bulk-len",
        "client-query-buffer-limit",
        "client-output-buffer-limit",
    )
    highest = max((int(db[2:]) for db in plan), default=0)
    databases = int(config.get("databases", 0))
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
    limits = _client_limits(client, target, server, plan, config, limit)
    _probe_restore(client, target, server, plan)
    return limits


def _config(client: redis.Redis, *names: str) -> dict[str, str]:
    try:
        return client.config_get(*names)
    except redis.RedisError:
        return {}  # CONFIG GET not allowed: RESTORE will tell


def _client_limits(
    client: redis.Redis,
    target: Target,
    server: drill.Drill,
    plan: dict[str, dict],
    config: dict[str, str],
    maxmemory: int,
) -> ClientLimits:
    """The largest key against what one client may hold on the target.

    RESTORE puts the whole payload in the client's query buffer: beyond proto-max-bulk-len
    Redis refuses it, and beyond maxmemory-clients Redis evicts (disconnects) the client in
    the middle of the restore, unless it runs with CLIENT NO-EVICT on (7.0+, when allowed).
    """
    largest, where = largest_key(server, plan)
    no_evict = _no_evict(client)
    warnings: list[str] = []
    if not largest:
        return ClientLimits(no_evict, warnings)
    size = f"{largest / MIB:.1f} MiB ({where})"
    bulk = int(config.get("proto-max-bulk-len") or 0)
    if bulk and largest > bulk:
        raise UsageError(
            f"the largest key of the backup is {size}, more than {target.where}'s "
            f"proto-max-bulk-len {bulk / MIB:.0f} MiB: raise proto-max-bulk-len there first"
        )
    query = int(config.get("client-query-buffer-limit") or 0)
    if query and largest * CLIENT_MEMORY_FACTOR > query:
        raise UsageError(
            f"the largest key of the backup is {size}; {target.where} disconnects a client "
            f"whose query buffer exceeds {query / MIB:.0f} MiB (client-query-buffer-limit): "
            "raise it there first"
        )
    output = _normal_output_limit(config.get("client-output-buffer-limit", ""))
    if output and largest > output:
        warnings.append(
            f"the largest key is {size}; {target.where} disconnects normal clients whose "
            f"output buffer exceeds {output / MIB:.1f} MiB (client-output-buffer-limit "
            "normal): applications reading it will be cut off unless that limit is raised"
        )
    clients = _maxmemory_clients(config.get("maxmemory-clients", "0"), maxmemory)
    if clients and largest * CLIENT_MEMORY_FACTOR > clients:
        if not no_evict:
            raise UsageError(
                f"the largest key of the backup is {size}; {target.where} evicts a client "
                f"holding more than {clients / MIB:.1f} MiB (maxmemory-clients), so the restore "
                "would be cut off midway: raise maxmemory-clients there, or restore as a user "
                "allowed CLIENT NO-EVICT (the bundle's admin)"
            )
        warnings.append(
            f"the largest key is {size}; {target.where} evicts clients holding more than "
            f"{clients / MIB:.1f} MiB (maxmemory-clients): applications reading it will be "
            "disconnected unless that limit is raised"
        )
    return ClientLimits(no_evict, warnings)


MIB = 1 << 20
# A client receiving a RESTORE holds its payload in the query buffer, and a little more.
CLIENT_MEMORY_FACTOR = 1.25


def _maxmemory_clients(value: str, maxmemory: int) -> int:
    """maxmemory-clients in bytes: a number, or a percentage of maxmemory (0: no limit)."""
    value = str(value).strip()
    if value.endswith("%"):
        return maxmemory * int(value[:-1]) // 100
    return int(value) if value.isdigit() else 0


def _normal_output_limit(value: str) -> int:
    """The hard limit of the `normal` class in client-output-buffer-limit (0: none)."""
    words = str(value).split()
    for start in range(0, len(words) - 3, 4):
        if words[start] == "normal" and words[start + 1].isdigit():
            return int(words[start + 1])
    return 0


def _no_evict(client: redis.Redis) -> bool:
    try:
        client.execute_command("CLIENT", "NO-EVICT", "on")
    except redis.ResponseError:  # before 7.0, or not allowed to this user
        return False
    return True


def largest_key(server: drill.Drill, plan: dict[str, dict]) -> tuple[int, str]:
    """The DUMP size of the largest key (by MEMORY USAGE) in the drill server, and where it is:
    what RESTORE will put in the target's query buffer."""
    largest, where, found = 0, "", None
    for db in plan:
        client = server.client(int(db[2:]))
        for keys in _scan_batches(client):
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.memory_usage(key, samples=0)  # every element: a sample can miss a big one
            for key, size in zip(keys, pipe.execute(), strict=True):
                if (size or 0) > largest:
                    largest, where, found = size, f"key {key!r} in {db}", (db, key)
        client.close()
    if found is None:
        return 0, ""
    client = server.client(int(found[0][2:]))
    payload = client.dump(found[1])
    client.close()
    return (len(payload) if payload else largest), where


def _scan_batches(client: redis.Redis):
    cursor = 0
    while True:
        cursor, keys = client.scan(cursor=cursor, count=500)
        if keys:
            yield keys
        if cursor == 0:
            return


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


def _probe_restore(
    client: redis.Redis, target: Target, server: drill.Drill, plan: dict[str, dict]
) -> None:
    """RESTORE one small real payload under a scratch name: the target can read what the
    drill server DUMPs (its own RDB version, which may be newer than the backup's)."""
    if not plan:
        return
    source = server.client(int(next(iter(plan))[2:]))
    keys = list(itertools.islice(source.scan_iter(count=10), 10))
    sizes = [source.memory_usage(key, samples=0) or 0 for key in keys]
    payload = source.dump(min(zip(sizes, keys, strict=True))[1]) if keys else None
    source.close()
    if payload is None:
        return
    probe = f"redkeep:restore-probe:{os.getpid()}"
    try:
        client.restore(probe, 60_000, payload, replace=True)
    except redis.ResponseError as error:
        version = int.from_bytes(payload[-10:-8], "little")
        raise RedkeepError(
            f"{target.where} cannot load the drill server's data ({str(error).splitlines()[0]}; "
            f"it writes RDB version {version}): restore with --server-binary pointing at a "
            "server no newer than the target, or into a newer target"
        ) from None
    finally:
        client.delete(probe)


def _target_keyspace(target: Target) -> dict[str, dict[str, int]]:
    with session(target) as client:
        try:
            return drill.keyspace(client)
        except redis.RedisError as error:
            raise explain_failure(error, target, "INFO keyspace") from None


def _target_factory(target: Target, no_evict: bool) -> Callable[[int], redis.Redis]:
    def connect(db: int) -> redis.Redis:
        client = client_for(replace(target, db=db), decode_responses=False)
        if no_evict:  # the pool keeps this one connection: copy_keys uses it sequentially
            client.execute_command("CLIENT", "NO-EVICT", "on")
        return client

    return connect
