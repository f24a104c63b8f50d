"""A backup of a Sentinel deployment: one RDB, from a replica in sync with the primary.

The data nodes are a Sentinel bundle's, or those a Sentinel (`--url` of a Sentinel) lists,
less the replicas it sees down. Their live roles are read from each one (INFO replication):
exactly one primary, and its replicas in sync - the same replication id as the primary,
`master_link_status:up`, no sync in progress, listed online by the primary with a lag of at
most `MAX_LAG` seconds, and at most backup.max_replica_gap_bytes of the primary's replication
stream behind (backup_cluster.replication_state). A replica
that lags or lost its link is never captured (it may hold old data, and it is what Sentinel
must not promote); without an in-sync replica, or with `--from primary`, the primary is.

The primary's address and replication id are read before and after the capture: a failover
gives the new primary a new replication id. If they changed, or the capture broke, the object
is deleted and the run starts once more on the topology as it is then (after waiting for one
primary again); a second change fails the run. So a stored backup never straddles a failover.
"""

import time
from dataclasses import dataclass
from typing import Any

from redkeep.actions import backup as single
from redkeep.actions.backup_cluster import MAX_GAP, listed_replica, replication_state
from redkeep.backup.encryption import Encryption
from redkeep.backup.manifest import Manifest
from redkeep.backup.serverinfo import read_info
from redkeep.errors import RedkeepError, StoreError, UsageError
from redkeep.redis.target import Target

ATTEMPTS = 2


@dataclass(frozen=True)
class Topology:
    primary: Target
    replid: str  # the primary's replication id: a failover changes it
    in_sync: tuple[Target, ...]
    states: tuple[str, ...]  # of each in-sync replica: its gap in bytes and its ACK lag
    lagging: tuple[str, ...]  # "host:port why", for the warning

    def signature(self) -> tuple[str, str]:
        return self.primary.where, self.replid


def data_nodes(seed: Target) -> list[Target]:
    """The data nodes a Sentinel at `seed` watches, reached as the seed is (less those down)."""
    from redkeep.redis.discover import discover  # noqa: PLC0415 - only for a Sentinel seed

    found = discover(seed)
    return [node.target for node in found.deployment.every_node()]


def read_topology(nodes: list[Target], max_gap: int = MAX_GAP) -> Topology:
    """The primary and its replicas in sync (at most `max_gap` bytes behind), as the nodes say
    now; raise when there is not exactly one primary answering."""
    infos: dict[Target, dict[str, Any]] = {}
    for node in nodes:
        try:
            infos[node] = read_info(node, timeout=5.0)
        except RedkeepError:
            continue  # a dead node: the live ones decide
    primaries = [node for node, info in infos.items() if info.get("role") == "master"]
    if len(primaries) != 1:
        names = ", ".join(node.where for node in primaries) or "none"
        raise RedkeepError(
            f"{len(primaries)} data nodes answer as the primary ({names}); a failover is "
            "under way or the deployment is split"
        )
    primary = primaries[0]
    replid = str(infos[primary].get("master_replid", ""))
    in_sync, states, lagging = [], [], []
    primary_info = infos[primary]
    for node in infos:
        if node is primary:
            continue
        try:  # again, after the primary's: its offset is then compared with the primary's
            info = read_info(node, timeout=5.0)
        except RedkeepError as error:
            lagging.append(f"{node.where} does not answer ({error.message})")
            continue
        listed = listed_replica(primary_info, node)
        why, state = _out_of_sync(primary_info, info, replid, listed, max_gap)
        if why:
            lagging.append(f"{node.where} {why}")
        else:
            in_sync.append(node)
            states.append(state)
    return Topology(primary, replid, tuple(in_sync), tuple(states), tuple(lagging))


def _out_of_sync(
    primary: dict[str, Any],
    info: dict[str, Any],
    replid: str,
    listed: dict[str, str] | None,
    max_gap: int,
) -> tuple[str, str]:
    """Why a replica is not in sync (backup_cluster.replica_out_of_sync says what in sync is),
    or "", and its gap and lag in words: the primary's INFO (read first), the replica's, the
    primary's replication id, the replica's entry in the primary's INFO."""
    if info.get("role") != "slave":
        return f"is a {info.get('role')}", ""
    if str(info.get("master_replid", "")) != replid:
        return "follows another replication history than the primary", ""
    if info.get("master_link_status") != "up":
        return "has its link to the primary down", ""
    if info.get("master_sync_in_progress"):
        return "is still syncing", ""
    if listed is None or listed.get("state") != "online":
        return "is not listed online by the primary", ""
    return replication_state(primary, info, listed, max_gap)


def wait_topology(nodes: list[Target], timeout: float, max_gap: int = MAX_GAP) -> Topology:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return read_topology(nodes, max_gap)
        except RedkeepError as error:
            if time.monotonic() >= deadline:
                raise RedkeepError(
                    f"no single primary within {timeout:g} s: {error.message}"
                ) from None
        time.sleep(0.2)


def capture_replicated(
    options: "single.RunOptions", nodes: list[Target], manifest: Manifest, encryption: Encryption
) -> list[str]:
    """Capture the deployment's data from a replica in sync (module docstring); fill
    `manifest`; return warnings."""
    if options.kind != "rdb":
        raise UsageError(
            f"a Sentinel deployment's backup captures an RDB (--type rdb), not --type "
            f"{options.kind}: an AOF is copied from the data directory on the machine running "
            "redkeep, and it is on whichever host is the primary now; use --type rdb"
        )
    warnings: list[str] = []
    name = single._object_name("dump.rdb", options, encryption)
    for attempt in range(1, ATTEMPTS + 1):
        before = wait_topology(nodes, options.settle_timeout, options.max_replica_gap)
        source, role, reason = before.primary, "primary", "--from primary"
        if options.capture_from == "replica" and before.in_sync:
            source, role = before.in_sync[0], "replica"
            reason = f"in sync: {before.states[0]}"
        elif options.capture_from == "replica":
            reason = f"no replica in sync ({'; '.join(before.lagging) or 'it has none'})"
            warnings.append(f"{reason}; captured from the primary {source.where}")
        try:
            info = read_info(source)
            record, item = single.store_rdb_object(
                options, source, manifest, encryption, name, int(info.get("used_memory", 0))
            )
        except StoreError:
            raise
        except RedkeepError as error:
            if attempt == ATTEMPTS:
                raise RedkeepError(
                    f"the capture from {source.where} failed again on attempt {attempt}: "
                    f"{error.message}"
                ) from None
            warnings.append(f"attempt {attempt}: the capture failed ({error.message}); retried")
            continue
        try:
            after = read_topology(nodes, options.max_replica_gap)
            changed = "" if after.signature() == before.signature() else after.primary.where
        except RedkeepError as error:
            changed = f"no single primary: {error.message}"
        if not changed:
            manifest.rdb = record
            manifest.objects.append(item)
            manifest.server = single.server_facts(info) | {
                "captured_from": source.where,
                "captured_role": role,
                "capture_reason": reason,
                "primary": before.primary.where,
            }
            manifest.keyspace["before"] = single.keyspace_of(info)
            return warnings
        options.store.delete([single._key(manifest, name)])
        reason = (
            f"the primary changed during the capture (was {before.primary.where}, now {changed})"
        )
        if attempt == ATTEMPTS:
            raise RedkeepError(
                f"{reason}, on attempt {attempt} too: nothing was stored as complete; run it "
                "again once the deployment is stable"
            )
        warnings.append(f"attempt {attempt}: {reason}; retried against the new topology")
    raise AssertionError("unreachable")
