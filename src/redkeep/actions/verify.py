"""`redkeep backup verify`: prove a backup restores.

Check that the drill server reads the backup's RDB format (else "cannot verify here"),
download each object, check its SHA-256, decrypt, decompress, check the RDB's CRC64 and run
the drill server's RDB checker, then a restore drill: load it into a throw-away server and
compare keys and expires per database with what the snapshot holds (its RDB walked after the
download), and send sampled keys through DUMP/RESTORE. A cluster backup's slot map must cover
every slot once, and every key of a shard must hash into that shard's slots.
"""

import datetime as dt
import itertools
import json
from dataclasses import replace
from pathlib import Path

import redis

from redkeep.actions.backup_catalog import Listed
from redkeep.backup import drill
from redkeep.backup.clustermap import coverage_problem
from redkeep.backup.fetch import OutputError
from redkeep.backup.manifest import VERIFIED, Manifest, StoredObject, object_key
from redkeep.backup.results import DrillCheck, ObjectChecks, VerifyResult
from redkeep.backup.stores import Store
from redkeep.backup.unpack import (
    Decryption,
    Snapshot,
    databases_for,
    expected_keyspace,
    read_snapshot,
    require_readable,
    stage,
)
from redkeep.errors import DamagedBackup, RedkeepError

SAMPLE = 100
SAMPLE_MAX_BYTES = 16 << 20


def verify_backup(
    store: Store,
    listed: Listed,
    decryption: Decryption,
    now: dt.datetime,
    server: drill.ServerBinary,
) -> VerifyResult:
    """Check every object of a backup and drill-restore it in `server`; record the verdict in
    verify.json.

    Only a verdict about the data is recorded: damage fails the backup, while a wrong key or a
    local problem (a drill server too old for the backup: CannotCheckHere) raises without
    touching an earlier verdict. When the verdict cannot be stored (a read-only store), the
    result says so in `record_error`: the verdict is still returned, to be shown.
    """
    manifest = listed.manifest
    assert manifest is not None
    identities = decryption.for_backup(store, manifest)
    parts = _parts(manifest)
    for view, _, _ in parts:
        require_readable(server, view, "verify")
    checked: dict[str, ObjectChecks] = {}
    damage = None
    workdir = drill.scratch_dir()
    try:
        if manifest.cluster:
            _check_slot_map(manifest)
        for view, item, place in parts:
            checked[item.name] = _verify_object(
                store, view, item, identities, workdir / place, server, _slots(manifest, place)
            )
    except DamagedBackup as error:
        damage = error.message
    finally:
        drill.remove(workdir)
    result = VerifyResult(
        id=manifest.id,
        source=manifest.source,
        drill_server=f"{server.flavour} {server.version}",
        verified_at=now.isoformat(),
        objects=checked,
        error=damage,
    )
    try:
        store.put_bytes(
            object_key(manifest.source, manifest.id, VERIFIED),
            json.dumps(result.to_json(), indent=2).encode(),
        )
    except (RedkeepError, OSError) as error:
        message = error.message if isinstance(error, RedkeepError) else error.strerror
        why = f"the verdict could not be stored as {VERIFIED}: {message}"
        return replace(result, record_error=why)
    return result


def _parts(manifest: Manifest) -> list[tuple[Manifest, StoredObject, str]]:
    """What to drill: each object with the manifest that describes it (a cluster backup's
    shard as a backup of its own) and a work directory name."""
    if not manifest.cluster:
        return [(manifest, item, item.content) for item in manifest.objects]
    parts = []
    for index in range(len(manifest.shards)):
        view = manifest.shard_view(index)
        parts += [(view, item, f"shard-{index}") for item in view.objects]
    return parts


def _slots(manifest: Manifest, place: str) -> list[tuple[int, int]] | None:
    """The slot ranges of the shard drilled in `place` (`shard-<k>`); None for one server."""
    if not manifest.cluster:
        return None
    index = int(place.removeprefix("shard-"))
    return [(first, last) for first, last in manifest.shards[index]["slots"]]


def _check_slot_map(manifest: Manifest) -> None:
    """A cluster backup's shards must serve every slot exactly once."""
    ranges = [tuple(tuple(pair) for pair in shard["slots"]) for shard in manifest.shards]
    problem = coverage_problem(ranges)
    if problem:
        raise DamagedBackup(f"its slot map does not cover the cluster: {problem}")


def _verify_object(
    store: Store,
    manifest: Manifest,
    item: StoredObject,
    identities: list,
    workdir: Path,
    server: drill.ServerBinary,
    slots: list[tuple[int, int]] | None = None,
) -> ObjectChecks:
    try:
        workdir.mkdir(parents=True)
    except OSError as error:
        raise OutputError(f"cannot create {workdir}: {error.strerror}") from None
    staged = stage(store, manifest, item, identities, workdir)
    checker = _check_rdb(server, staged.path) if staged.rdb is not None else None
    # What the snapshot holds, counted in the file just checked against the manifest's hash.
    snapshot = read_snapshot(staged.path) if staged.rdb is not None else None
    databases = databases_for(manifest, snapshot)
    with drill.scratch_server(workdir, staged.aof_dirname, databases, server) as drilled:
        loaded = compare_keyspace(drilled, manifest, snapshot)
        if slots is not None:  # a cluster shard: every key in its slots
            dbs = [int(db[2:]) for db in loaded.keyspace]
            drill.require_keys_in_slots(drilled, slots, workdir.name.replace("-", " "), dbs)
    return ObjectChecks(drill=loaded, rdb=staged.rdb, rdb_checker=checker)


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


def compare_keyspace(
    server: drill.Drill, manifest: Manifest, snapshot: Snapshot | None = None
) -> DrillCheck:
    """Keys and expires per db in the drill server against what the backup should hold.

    For an RDB, `snapshot` is what its file holds (walked after download; a backup from an
    older redkeep recorded it in the manifest instead): each count must be that, less the keys
    that expired since (dropped while loading, or after). Without it (an AOF, an RDB the walk
    cannot read) each count must lie between the INFO readings taken before and after the
    capture, less the expired keys: a bound that holds only while no keys come and go during
    the capture.
    """
    client = server.client()
    loaded = drill.keyspace(client)
    info = client.info("all")
    client.close()
    expired = int(info.get("rdb_last_load_keys_expired", 0)) + int(info.get("expired_keys", 0))
    expected = expected_keyspace(manifest, snapshot) if snapshot is not None else None
    if expected is not None:
        if "rdb_last_load_keys_expired" not in info:  # Redis 6.2 does not count them
            expired += sum(sizes["expires"] for sizes in expected.values())
        low_window = high_window = expected
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
        source = "the snapshot holds" if expected is not None else "the server held"
        raise DamagedBackup(
            f"restore drill: the loaded data differs from what {source}: "
            + "; ".join(problems)
            + (f" (less up to {expired} expired keys)" if expired else "")
        )
    return DrillCheck(
        keyspace=loaded,
        expected_from="snapshot" if expected is not None else "server INFO",
        expired_since_capture=expired,
        sampled_keys=_sample_round_trip(server, loaded, databases_for(manifest, snapshot) - 1),
    )


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
