"""A backup of a Redis Cluster: one RDB per shard, captured in parallel, and the slot map.

The slot map is read before the captures (and must be settled: every slot served once, no
primary failing, no slot migrating, every primary answering) and again after them. Each shard
is captured from a replica in sync with its primary (replica_out_of_sync says what that is:
its ACK lag and how many bytes it is behind) or, without one or with `--from primary`, from
the primary; the manifest says which and why. If a capture breaks or the map changed in
between (a failover, a slot migration), the captures may not fit together: what was stored is
deleted and the run starts once more on the map as it is then; a second change fails the run
with the reason. So a run never stores a backup whose shards come from different topologies.
"""

import concurrent.futures
from dataclasses import dataclass
from typing import Any

from redkeep.actions import backup as single
from redkeep.backup import clustermap
from redkeep.backup.clustermap import Shard, SlotMap
from redkeep.backup.encryption import Encryption
from redkeep.backup.manifest import Manifest, StoredObject
from redkeep.backup.serverinfo import read_info
from redkeep.config.defaults import BackupDefaults
from redkeep.errors import RedkeepError, StoreError, UsageError
from redkeep.redis.target import Target

MAX_LAG = 10  # seconds since the replica's last ACK, as its primary says (min-replicas-max-lag)
# Bytes of the primary's replication stream a replica may not have processed yet, by default
# (backup.max_replica_gap_bytes). An ACK lag of a second can hide megabytes under heavy writes;
# 1 MiB is far above what a healthy replica lags between two INFO readings, and far below what
# makes a backup visibly older.
MAX_GAP = BackupDefaults.max_replica_gap_bytes
ATTEMPTS = 2


@dataclass(frozen=True)
class Source:
    """Where one shard is captured from."""

    index: int
    shard: Shard
    target: Target
    role: str  # "replica" or "primary"
    address: str
    reason: str  # why this node: "--from primary", the replica's gap and lag, or none in sync


def capture_cluster(
    options: "single.RunOptions",
    seeds: list[Target],
    manifest: Manifest,
    encryption: Encryption,
) -> list[str]:
    """Capture every shard and fill `manifest` (objects, cluster); return warnings."""
    if options.kind != "rdb":
        raise UsageError(
            f"a cluster backup captures one RDB per shard (--type rdb), not --type "
            f"{options.kind}: an AOF is copied from the data directory on the machine running "
            "redkeep, and each shard's AOF is on its own primary's host; use --type rdb"
        )
    warnings: list[str] = []
    for attempt in range(1, ATTEMPTS + 1):
        before, seed = clustermap.wait_settled(seeds, options.settle_timeout)
        chosen: list[str] = []  # why a shard is read from its primary: this attempt's only
        sources = [
            _source(seed, index, shard, options, chosen)
            for index, shard in enumerate(before.shards)
        ]
        try:
            captured = _capture_in_parallel(options, sources, manifest, encryption)
        except StoreError:
            raise  # the store failed, not the cluster: another attempt would fail the same way
        except RedkeepError as error:
            if attempt == ATTEMPTS:
                raise RedkeepError(
                    f"a shard capture failed again on attempt {attempt}: {error.message}"
                ) from None
            warnings.append(f"attempt {attempt}: a shard capture failed ({error.message}); retried")
            continue
        after, _ = clustermap.read_slot_map([seed, *seeds])
        moving = clustermap.migrating_anywhere(seed, after)
        if after.signature() == before.signature() and not moving:
            _fill(manifest, before, sources, captured, attempt)
            return warnings + chosen
        _discard(options, manifest, captured)
        change = moving or before.describe_change(after)
        if attempt == ATTEMPTS:
            raise RedkeepError(
                f"the cluster's topology changed during the backup ({change}), on attempt "
                f"{attempt} too: nothing was stored as complete; run it again once the cluster "
                "is stable"
            )
        warnings.append(
            f"attempt {attempt}: the cluster's topology changed during the capture ({change}); "
            "retried against the new topology"
        )
    raise AssertionError("unreachable")


def _source(
    seed: Target, index: int, shard: Shard, options: "single.RunOptions", warnings: list[str]
) -> Source:
    """The node to capture shard `index` from: a replica in sync, else its primary."""
    target = clustermap.node_target(seed, shard.primary)
    where = clustermap.address(shard.primary)
    if options.capture_from == "primary":
        return Source(index, shard, target, "primary", where, "--from primary")
    try:
        primary_info = read_info(target, timeout=5.0)
    except RedkeepError:
        primary_info = None
    lagging = []
    for replica in shard.replicas:
        address = clustermap.address(replica)
        if "fail" in replica.flags:  # the cluster agreed it is down (not one node's "fail?")
            lagging.append(f"{address} is marked failed by the cluster")
            continue
        replica_target = clustermap.node_target(seed, replica)
        why, state = replica_out_of_sync(replica_target, primary_info, options.max_replica_gap)
        if not why:
            return Source(index, shard, replica_target, "replica", address, f"in sync: {state}")
        lagging.append(f"{address} {why}")
    detail = f" ({'; '.join(lagging)})" if lagging else " (it has none)"
    warnings.append(f"shard {index}: no replica in sync{detail}; captured from the primary {where}")
    return Source(index, shard, target, "primary", where, f"no replica in sync{detail}")


def replica_out_of_sync(
    target: Target, primary: dict[str, Any] | None, max_gap: int = MAX_GAP
) -> tuple[str, str]:
    """Why the replica at `target` is not in sync with its primary ("" when it is), and how far
    behind it is (its gap in bytes and its ACK lag, for the manifest).

    In sync: its primary lists it online with a lag (seconds since its last REPLCONF ACK,
    sent every second; what min-replicas-max-lag counts) of at most MAX_LAG, it is at most
    `max_gap` bytes (backup.max_replica_gap_bytes) of the replication stream behind its primary,
    and it says its link is up and
    no sync is in progress. (Its own `master_last_io_seconds_ago` is no measure: an idle
    primary pings its replicas only every repl-ping-replica-period, 10 s.) `primary` is the
    primary's INFO, read before the replica's; None when it did not answer.
    """
    try:
        info = read_info(target, timeout=5.0)
    except RedkeepError as error:
        return f"does not answer ({error.message})", ""
    if info.get("role") != "slave":
        return f"is a {info.get('role')}, not a replica", ""
    if info.get("master_link_status") != "up":
        return "has its link to the primary down", ""
    if info.get("master_sync_in_progress"):
        return "is still syncing", ""
    if primary is None:
        return "has a primary that does not answer", ""
    return replication_state(primary, info, listed_replica(primary, target), max_gap)


def replication_state(
    primary: dict[str, Any],
    replica: dict[str, Any],
    listed: dict[str, str] | None,
    max_gap: int = MAX_GAP,
) -> tuple[str, str]:
    """Why a replica with its link up is not in sync, by its primary's INFO (read first), its
    own INFO and its entry in the primary's (`listed`); and its gap and lag in words."""
    if listed is None:
        return "is not listed by its primary as a replica", ""
    if listed.get("state") != "online":
        return f"is {listed.get('state')} on its primary, not online", ""
    lag = int(listed.get("lag", -1))
    # What the primary had written minus what the replica has processed (writes between the
    # two readings can put the replica ahead: that is no gap).
    offset = int(replica.get("slave_repl_offset", 0))
    gap = max(0, int(primary.get("master_repl_offset", 0)) - offset)
    state = f"{gap} bytes behind its primary, last ACK {lag} s ago"
    if not 0 <= lag <= MAX_LAG:
        return f"acknowledged the primary's stream {lag} s ago (more than {MAX_LAG})", state
    if gap > max_gap:
        return f"is {gap} bytes behind its primary (more than {max_gap})", state
    return "", state


def listed_replica(primary: dict[str, Any], target: Target) -> dict[str, str] | None:
    """The primary's INFO entry (`slaveN: ip=..,port=..,state=..,offset=..,lag=..`) of the
    replica at `target`: by port, and by address too when several share the port."""
    entries = [
        dict(item.partition("=")[::2] for item in str(value).split(","))
        for key, value in primary.items()
        if key.startswith("slave") and key[5:].isdigit()
    ]
    same_port = [entry for entry in entries if entry.get("port") == str(target.port)]
    if len(same_port) > 1:
        same_port = [entry for entry in same_port if entry.get("ip") == target.host]
    return same_port[0] if len(same_port) == 1 else None


def shard_object_name(index: int, options: "single.RunOptions", encryption: Encryption) -> str:
    return single._object_name(f"shard-{index}.dump.rdb", options, encryption)


def _capture_in_parallel(
    options: "single.RunOptions", sources: list[Source], manifest: Manifest, encryption: Encryption
) -> dict[int, tuple[dict[str, Any], StoredObject, dict[str, Any]]]:
    """Capture every shard at once; on any failure delete what the others stored and raise
    the first failure."""

    def one(source: Source) -> tuple[dict[str, Any], StoredObject, dict[str, Any]]:
        info = read_info(source.target)
        name = shard_object_name(source.index, options, encryption)
        hint = int(info.get("used_memory", 0))
        record, item = single.store_rdb_object(
            options, source.target, manifest, encryption, name, hint
        )
        return record, item, info

    captured: dict[int, tuple[dict[str, Any], StoredObject, dict[str, Any]]] = {}
    failures: list[BaseException] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(sources)) as pool:
        futures = {pool.submit(one, source): source for source in sources}
        for future in concurrent.futures.as_completed(futures):
            source = futures[future]
            try:
                captured[source.index] = future.result()
            except RedkeepError as error:
                failures.append(
                    RedkeepError(
                        f"shard {source.index} from {source.address}: {error.message}",
                        error.status,
                        error.kind,
                    )
                )
            except BaseException as error:  # noqa: BLE001 - delete the others' objects first
                failures.append(error)
    if failures:
        _discard(options, manifest, captured)
        stored = next((f for f in failures if isinstance(f, StoreError)), None)
        raise stored or failures[0]
    return captured


def _discard(options: "single.RunOptions", manifest: Manifest, captured: dict) -> None:
    keys = [single._key(manifest, item.name) for _, item, _ in captured.values()]
    if keys:
        options.store.delete(keys)


def _fill(
    manifest: Manifest, slot_map: SlotMap, sources: list[Source], captured: dict, attempts: int
) -> None:
    shards = []
    for source in sources:
        record, item, info = captured[source.index]
        manifest.objects.append(item)
        shards.append(
            {
                "index": source.index,
                "slots": [list(pair) for pair in source.shard.ranges],
                "primary_id": source.shard.primary.id,
                "primary": clustermap.address(source.shard.primary),
                "config_epoch": source.shard.epoch,
                "captured_from": source.address,
                "captured_role": source.role,
                "capture_reason": source.reason,
                "object": item.name,
                "rdb": record,
                "keyspace": single.keyspace_of(info),
            }
        )
    manifest.cluster = {
        "shards": shards,
        "attempts": attempts,
        "slot_map": "unchanged during the capture",
    }
    first = captured[sources[0].index][2]
    manifest.server = single.server_facts(first)
    manifest.keyspace["before"] = _sum(shard["keyspace"] for shard in shards)


def _sum(keyspaces) -> dict[str, dict[str, int]]:
    total: dict[str, dict[str, int]] = {}
    for keyspace in keyspaces:
        for db, counts in keyspace.items():
            into = total.setdefault(db, {"keys": 0, "expires": 0})
            into["keys"] += counts["keys"]
            into["expires"] += counts["expires"]
    return total
